// The endpoints flow of endpoints-stack.test.ts, run inside the WAN namespace (this machine's
// stand-in): a web group of 2 in us-east exposes port 80; its manager runs here, beside the
// control plane, with the datacenter's host in a namespace (as `globalvm up` does), so the
// endpoint is on this namespace's loopback. Prints one JSON line with what it saw.
import { execFileSync } from "node:child_process";
import { request } from "node:http";
import { SERVE_NAME } from "../support/guest-scripts.ts";
import {
  createGroup,
  createGuestImage,
  expectSucceeded,
  listInstances,
  uploadGuestVersion,
} from "../support/vm-groups.ts";
import { type NetworkStackConfig, readStackConfig, runAndReport, startNetworkStack } from "./stack-hosts.ts";

const { config, first } = readStackConfig<NetworkStackConfig>("endpoints-stack-process.ts");

/** One request on a new connection: the body, or the error's code. */
function get(address: string): Promise<{ ok: boolean; text: string }> {
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

/** Keeps requesting the endpoint until stopped; counts answers by body and failures by kind. */
function loadLoop(address: string) {
  const counts = {
    ok: 0,
    failed: 0,
    answers: {} as Record<string, number>,
    failures: {} as Record<string, number>,
  };
  let running = true;
  const done = (async () => {
    while (running) {
      const answer = await get(address);
      const bucket = answer.ok ? counts.answers : counts.failures;
      bucket[answer.text] = (bucket[answer.text] ?? 0) + 1;
      if (answer.ok) counts.ok++;
      else counts.failed++;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    counts,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

const stack = await startNetworkStack("endpoints", config, { GLOBALVM_HEARTBEAT_INTERVAL_MS: "1000" });
const result: Record<string, unknown> = {};
await runAndReport(stack, result, async () => {
  const image = await createGuestImage(stack, "guest", first);
  const web = await createGroup(stack, {
    name: "web",
    image,
    region: first,
    size: 2,
    expose: [{ port: 80 }],
    metadata: { "startup-script": SERVE_NAME },
  });
  await expectSucceeded(stack, web.operationId, 400_000);
  const group = (await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)).body;
  result.endpoints = group.endpoints;
  const address = group.endpoints?.[0]?.address as string;
  result.instances = (await listInstances(stack, web.groupId)).map((i) => [i.name, i.state]);

  // The default network lets its own instances talk; the outside needs a rule.
  result.withoutRule = await get(address);
  const networks = await stack.call("GET", "/v1/networks", stack.projectToken);
  const network = (networks.body.items as { id: string; name: string }[]).find((n) => n.name === "default");
  const asked = Date.now();
  const rule = await stack.call("POST", `/v1/networks/${network?.id}/firewall-rules`, stack.projectToken, {
    name: "web-from-anywhere",
    action: "allow",
    protocol: "tcp",
    ports: ["80"],
    source: { cidr: "0.0.0.0/0" },
  });
  if (rule.status !== 201) throw new Error(`rule: ${rule.status} ${JSON.stringify(rule.body)}`);
  while (!(await get(address)).ok && Date.now() - asked < 10_000) await new Promise((r) => setTimeout(r, 50));
  result.allowedAfterMs = Date.now() - asked;
  const seen = new Set<string>();
  for (let i = 0; i < 20 && seen.size < 2; i++) seen.add((await get(address)).text);
  result.seen = [...seen].sort();

  // A rolling update (a new version the group follows), then a resize to 1, under load.
  const load = loadLoop(address);
  await uploadGuestVersion(stack, image, 2, "endpoints v2");
  const deadline = Date.now() + 600_000;
  for (;;) {
    const instances = await listInstances(stack, web.groupId);
    const rolled =
      instances.length === 2 && instances.every((i) => i.image_version === 2 && i.state === "ready");
    const current = (await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)).body;
    if (rolled && current.state === "ready") break;
    if (Date.now() > deadline) throw new Error(`rolling update did not finish: ${JSON.stringify(instances)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const resize = await stack.call("PATCH", `/v1/vm-groups/${web.groupId}`, stack.projectToken, { size: 1 });
  if (resize.status !== 202) throw new Error(`resize: ${resize.status} ${JSON.stringify(resize.body)}`);
  await expectSucceeded(stack, resize.body.id, 120_000);
  await load.stop();
  result.underLoad = load.counts;
  result.afterResize = (
    await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)
  ).body.endpoints;

  const deleted = await stack.call("DELETE", `/v1/vm-groups/${web.groupId}`, stack.projectToken);
  await expectSucceeded(stack, deleted.body.id, 120_000);
  result.afterDelete = await get(address);
  const host = config.regions[0]?.netns as string;
  result.natAfterDelete = execFileSync("ip", ["netns", "exec", host, "nft", "list", "ruleset"], {
    encoding: "utf8",
  }).includes("dnat");
});
