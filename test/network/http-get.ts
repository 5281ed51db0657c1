// How the network flows (run in the WAN namespace) reach an endpoint as an outside client does.
import { request } from "node:http";

/** One request on a new connection: the body, or the error's code. */
export function get(address: string): Promise<{ ok: boolean; text: string }> {
  const [host, port] = address.split(":");
  return new Promise((resolve) => {
    const req = request({ host, port: Number(port), path: "/", agent: false, timeout: 3000 }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => resolve({ ok: res.statusCode === 200, text: text.trim() }));
      res.on("error", (error) => resolve({ ok: false, text: String(error) }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (error: NodeJS.ErrnoException) =>
      resolve({ ok: false, text: error.code ?? error.message }),
    );
    req.end();
  });
}

/** Asks until the endpoint answers 200 or `ms` pass; the last answer. */
export async function getWhenServing(address: string, ms: number): Promise<{ ok: boolean; text: string }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const answer = await get(address);
    if (answer.ok || Date.now() > deadline) return answer;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
