// A client of QEMU's machine protocol (QMP) over its unix socket. QMP sends one JSON object per
// line: a greeting, then replies ({"return"} or {"error"}, carrying the request's "id") and
// events ({"event"}), interleaved.
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { connectUnixSocket } from "./unix-socket.ts";

export type QmpMessage =
  | { kind: "greeting"; version: unknown }
  | { kind: "return"; id: string | undefined; value: unknown }
  | { kind: "error"; id: string | undefined; errorClass: string; description: string }
  | { kind: "event"; event: string; data: Record<string, unknown> }
  | { kind: "unknown"; raw: unknown };

export function classifyQmpMessage(raw: unknown): QmpMessage {
  if (typeof raw !== "object" || raw === null) return { kind: "unknown", raw };
  const message = raw as Record<string, unknown>;
  const id = typeof message.id === "string" ? message.id : undefined;
  if ("QMP" in message) return { kind: "greeting", version: (message.QMP as { version?: unknown })?.version };
  if ("return" in message) return { kind: "return", id, value: message.return };
  if ("error" in message) {
    const error = (message.error ?? {}) as { class?: unknown; desc?: unknown };
    return {
      kind: "error",
      id,
      errorClass: String(error.class ?? "GenericError"),
      description: String(error.desc ?? "unknown error"),
    };
  }
  if (typeof message.event === "string") {
    return { kind: "event", event: message.event, data: (message.data ?? {}) as Record<string, unknown> };
  }
  return { kind: "unknown", raw };
}

/** Cuts a byte stream into QMP messages; keeps an incomplete last line for the next chunk. */
export class QmpMessageReader {
  #pending = "";

  push(chunk: string): QmpMessage[] {
    this.#pending += chunk;
    const lines = this.#pending.split("\n");
    this.#pending = lines.pop() ?? "";
    const messages: QmpMessage[] = [];
    for (const line of lines) {
      const trimmed = line.trim();
      if (trimmed === "") continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(trimmed);
      } catch {
        messages.push({ kind: "unknown", raw: trimmed });
        continue;
      }
      messages.push(classifyQmpMessage(parsed));
    }
    return messages;
  }
}

export class QmpError extends Error {
  override name = "QmpError";
  readonly errorClass: string;
  constructor(errorClass: string, message: string) {
    super(message);
    this.errorClass = errorClass;
  }
}

export type QmpClientEvents = {
  event: [{ event: string; data: Record<string, unknown> }];
  close: [];
};

interface PendingCommand {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class QmpClient extends EventEmitter<QmpClientEvents> {
  readonly #socket: Socket;
  readonly #reader = new QmpMessageReader();
  readonly #pending = new Map<string, PendingCommand>();
  #nextId = 1;
  #closed = false;

  private constructor(socket: Socket) {
    super();
    this.#socket = socket;
  }

  /** Connects, waits for the greeting and leaves capabilities negotiation mode. */
  static async connect(socketPath: string, timeoutMs = 5_000): Promise<QmpClient> {
    const socket = await connectUnixSocket(socketPath, timeoutMs);
    socket.setEncoding("utf8");
    const client = new QmpClient(socket);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no QMP greeting on ${socketPath} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onError = (error: Error) => {
        clearTimeout(timer);
        reject(new Error(`QMP connection to ${socketPath} failed: ${error.message}`));
      };
      socket.once("error", onError);
      const onData = (chunk: string) => {
        for (const message of client.#reader.push(chunk)) {
          if (message.kind === "greeting") {
            clearTimeout(timer);
            socket.off("error", onError);
            socket.off("data", onData);
            resolve();
            return;
          }
        }
      };
      socket.on("data", onData);
    });
    socket.on("data", (chunk: string) => client.#receive(chunk));
    socket.on("error", () => client.#onClose());
    socket.on("close", () => client.#onClose());
    await client.execute("qmp_capabilities");
    return client;
  }

  get closed(): boolean {
    return this.#closed;
  }

  execute(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error(`QMP connection closed before ${command}`));
    const id = `gvm-${this.#nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`QMP ${command} got no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  close(): void {
    this.#socket.destroy();
    this.#onClose();
  }

  #receive(chunk: string): void {
    for (const message of this.#reader.push(chunk)) {
      if (message.kind === "event") {
        this.emit("event", { event: message.event, data: message.data });
      } else if (message.kind === "return" || message.kind === "error") {
        const pending = message.id === undefined ? undefined : this.#pending.get(message.id);
        if (!pending || message.id === undefined) continue;
        this.#pending.delete(message.id);
        clearTimeout(pending.timer);
        if (message.kind === "return") pending.resolve(message.value);
        else pending.reject(new QmpError(message.errorClass, message.description));
      }
    }
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new Error(`QMP connection closed before the reply to ${id}`));
    }
    this.#pending.clear();
    this.emit("close");
  }
}
