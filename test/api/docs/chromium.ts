// Debian's headless chromium driven over the DevTools protocol (Node's own WebSocket, no
// library), with every request to anywhere but one origin refused and recorded.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM = "/usr/bin/chromium";

type Message = { id?: number; method?: string; params?: any; result?: any; error?: any; sessionId?: string };

export interface Page {
  /** Requests to anywhere but the allowed origin: refused before they left the browser. */
  blocked: string[];
  /** Failed loads, HTTP errors, exceptions, console errors (CSP violations are reported there). */
  problems: string[];
  /** Loads `url` and waits for its load event. */
  open(url: string): Promise<void>;
  evaluate<T>(expression: string): Promise<T>;
  screenshot(): Promise<Buffer>;
  close(): Promise<void>;
}

/** Starts chromium whose only reachable origin is `origin`; the network beyond is cut twice over. */
export async function openPage(origin: string): Promise<Page> {
  const profile = mkdtempSync(join(tmpdir(), "docs-chromium-"));
  const browser = spawn(
    CHROMIUM,
    [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--window-size=1280,2000",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      // Anything not on loopback goes to a proxy nobody listens on, and no name resolves.
      "--proxy-server=http://127.0.0.1:9",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      "about:blank",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  try {
    const socket = await connect(await devtoolsUrl(browser));
    return await attach(socket, browser, profile, origin);
  } catch (error) {
    browser.kill("SIGKILL");
    rmSync(profile, { recursive: true, force: true });
    throw error;
  }
}

function devtoolsUrl(browser: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => reject(new Error(`chromium did not start:\n${output}`)), 20_000);
    browser.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk;
      const match = output.match(/DevTools listening on (ws:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1] as string);
      }
    });
    browser.once("exit", (code) => reject(new Error(`chromium exited (${code}):\n${output}`)));
  });
}

function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.onopen = () => resolve(socket);
    socket.onerror = () => reject(new Error(`cannot connect to ${url}`));
  });
}

async function attach(
  socket: WebSocket,
  browser: ChildProcess,
  profile: string,
  origin: string,
): Promise<Page> {
  let nextId = 1;
  const pending = new Map<number, { resolve(value: any): void; reject(error: Error): void }>();
  const listeners = new Set<(message: Message) => void>();
  socket.onmessage = (event) => {
    const message = JSON.parse(String(event.data)) as Message;
    const waiter = message.id === undefined ? undefined : pending.get(message.id);
    if (waiter) {
      pending.delete(message.id as number);
      if (message.error) waiter.reject(new Error(JSON.stringify(message.error)));
      else waiter.resolve(message.result);
    } else for (const listener of listeners) listener(message);
  };
  let sessionId: string | undefined;
  const send = (method: string, params: object = {}): Promise<any> => {
    const id = nextId++;
    socket.send(JSON.stringify({ id, method, params, sessionId }));
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  };

  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  sessionId = (await send("Target.attachToTarget", { targetId, flatten: true })).sessionId;
  const blocked: string[] = [];
  const problems: string[] = [];
  listeners.add((message) => {
    const { method, params } = message;
    if (method === "Fetch.requestPaused") {
      const url: string = params.request.url;
      if (new URL(url).origin === origin) void send("Fetch.continueRequest", { requestId: params.requestId });
      else {
        blocked.push(url);
        void send("Fetch.failRequest", { requestId: params.requestId, errorReason: "BlockedByClient" });
      }
    } else if (method === "Network.loadingFailed") problems.push(`load failed: ${params.errorText}`);
    else if (method === "Network.responseReceived" && params.response.status >= 400)
      problems.push(`HTTP ${params.response.status}: ${params.response.url}`);
    else if (method === "Runtime.exceptionThrown")
      problems.push(`exception: ${params.exceptionDetails.text}`);
    else if (method === "Runtime.consoleAPICalled" && params.type === "error")
      problems.push(`console: ${JSON.stringify(params.args)}`);
    else if (method === "Log.entryAdded" && params.entry.level === "error")
      problems.push(`log: ${params.entry.text} ${params.entry.url ?? ""}`);
  });
  for (const domain of ["Page", "Runtime", "Network", "Log"]) await send(`${domain}.enable`);
  await send("Fetch.enable", { patterns: [{ urlPattern: "*" }] });

  return {
    blocked,
    problems,
    async open(url) {
      const loaded = new Promise<void>((resolve) => {
        const listener = (message: Message) => {
          if (message.method !== "Page.loadEventFired") return;
          listeners.delete(listener);
          resolve();
        };
        listeners.add(listener);
      });
      const { errorText } = await send("Page.navigate", { url });
      if (errorText) throw new Error(`navigating to ${url}: ${errorText}`);
      await loaded;
    },
    async evaluate(expression) {
      const { result, exceptionDetails } = await send("Runtime.evaluate", {
        expression,
        returnByValue: true,
        awaitPromise: true,
      });
      if (exceptionDetails) throw new Error(`${expression}: ${exceptionDetails.text}`);
      return result.value;
    },
    async screenshot() {
      const { data } = await send("Page.captureScreenshot", { format: "png" });
      return Buffer.from(data, "base64");
    },
    async close() {
      socket.close();
      const exited = new Promise((resolve) => browser.once("exit", resolve));
      browser.kill("SIGTERM");
      await exited;
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
