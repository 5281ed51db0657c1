// A namespace host (`globalvm up`) keeps its underlay address inside a network namespace that the
// machine's own network does not reach, and globalvm never adds routes or rules outside its
// namespaces. So each endpoint is also offered on the manager's loopback: a listener here hands
// each connection through a unix socket (a file, which crosses namespaces) to socat inside the
// namespace, which connects to the endpoint there, where the kernel's NAT and firewall do the
// rest. socat dies with this process (PR_SET_PDEATHSIG through setpriv), so a restarted manager
// starts afresh instead of finding stale relays.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";

const SOCKET_WAIT_MS = 3000;

interface Relay {
  server: Server;
  socat: ChildProcess;
  /** Open client connections, closed with the relay. */
  clients: Set<Socket>;
}

export class LoopbackRelays {
  readonly #netns: string;
  readonly #underlayAddress: string;
  readonly #socketDir: string;
  readonly #log: (line: string) => void;
  readonly #relays = new Map<number, Relay>();

  constructor(options: {
    netns: string;
    underlayAddress: string;
    socketDir: string;
    log: (line: string) => void;
  }) {
    this.#netns = options.netns;
    this.#underlayAddress = options.underlayAddress;
    this.#socketDir = options.socketDir;
    this.#log = options.log;
  }

  /** The loopback address the relays listen on: what endpoints are reported as. */
  static readonly host = "127.0.0.1";

  /** Relays exactly `ports`; returns the ports it could not listen on (something else holds them). */
  async sync(ports: readonly number[]): Promise<number[]> {
    const wanted = new Set(ports);
    for (const [port, relay] of this.#relays) {
      if (!wanted.has(port)) {
        this.#relays.delete(port);
        await stop(relay);
      }
    }
    const refused: number[] = [];
    for (const port of wanted) {
      if (this.#relays.has(port)) continue;
      try {
        this.#relays.set(port, await this.#start(port));
      } catch (error) {
        this.#log(
          `[WARN] endpoint port ${port} cannot be relayed from the loopback: ${(error as Error).message}`,
        );
        refused.push(port);
      }
    }
    return refused;
  }

  async close(): Promise<void> {
    const relays = [...this.#relays.values()];
    this.#relays.clear();
    await Promise.all(relays.map(stop));
  }

  async #start(port: number): Promise<Relay> {
    const socket = join(this.#socketDir, `endpoint-${port}.sock`);
    rmSync(socket, { force: true });
    const socat = spawn(
      "setpriv",
      [
        ...["--pdeathsig", "KILL", "ip", "netns", "exec", this.#netns, "socat"],
        `UNIX-LISTEN:${socket},fork,mode=600`,
        // A connection the firewall drops is given up after a while, not held for minutes.
        `TCP:${this.#underlayAddress}:${port},connect-timeout=10`,
      ],
      { stdio: "ignore" },
    );
    try {
      await socketAppears(socket, socat);
      const clients = new Set<Socket>();
      const server = createServer({ allowHalfOpen: true }, (client) => {
        clients.add(client);
        client.on("close", () => clients.delete(client));
        relay(client, socket);
      });
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, LoopbackRelays.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      return { server, socat, clients };
    } catch (error) {
      socat.kill("SIGKILL");
      throw error;
    }
  }
}

function relay(client: Socket, socket: string): void {
  const inner = createConnection({ path: socket, allowHalfOpen: true });
  client.pipe(inner).pipe(client);
  // Either side failing ends both: the client sees its connection close, never a hang.
  const end = () => {
    client.destroy();
    inner.destroy();
  };
  client.on("error", end);
  inner.on("error", end);
  client.on("close", () => inner.destroy());
  inner.on("close", () => client.end());
}

async function socketAppears(socket: string, socat: ChildProcess): Promise<void> {
  const deadline = Date.now() + SOCKET_WAIT_MS;
  while (!existsSync(socket)) {
    if (socat.exitCode !== null) throw new Error(`socat exited with ${socat.exitCode}`);
    if (Date.now() > deadline)
      throw new Error(`socat did not listen on ${socket} within ${SOCKET_WAIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function stop(relay: Relay): Promise<void> {
  relay.socat.kill("SIGKILL");
  const closed = new Promise<void>((resolve) => relay.server.close(() => resolve()));
  for (const client of relay.clients) client.destroy();
  await closed;
}
