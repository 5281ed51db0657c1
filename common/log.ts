// The services' logs: JSON lines (pino), one object per line with `level` (a label), `time`
// (ISO 8601), `service`, `datacenter` where there is one, `msg`, and — for work done for a
// request or an operation — `trace_id`, `span_id` and `operation_id`, taken from the trace
// scope (common/trace-context.ts) of the work under way. `globalvm serve` writes them to stderr;
// `globalvm up` to files in its data dir, with short human lines on the terminal.
//
// Secrets never reach a line: values under authorization/token/secret/credential/password keys
// are censored (pino `redact`), and anything shaped like a globalvm token (`gvm_…`) or a JWT is
// replaced in the finished line, whatever field it hid in. The rule for code is still that no
// log call interpolates a token: these are the net under it.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { ConfigurationError } from "./configuration-error.ts";
import { currentTrace, type TraceScope } from "./trace-context.ts";

export type Logger = pino.Logger;

/** A component's log: one message, optionally led by `[ERROR]`, `[WARN]`, `[INFO]` or `[DEBUG]`. */
export type LineLog = (line: string) => void;

export type LogService = "control-plane" | "regional-manager" | (string & {});

export const LOG_LEVEL_VARIABLE = "GLOBALVM_LOG_LEVEL";
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** GLOBALVM_LOG_LEVEL, default info; anything else stops the service with an error naming it. */
export function logLevelFrom(env: NodeJS.ProcessEnv = process.env): LogLevel {
  const text = env[LOG_LEVEL_VARIABLE]?.trim().toLowerCase() ?? "";
  if (text === "") return "info";
  if ((LOG_LEVELS as readonly string[]).includes(text)) return text as LogLevel;
  throw new ConfigurationError(
    `${LOG_LEVEL_VARIABLE} must be one of ${LOG_LEVELS.join(", ")}, not ${JSON.stringify(env[LOG_LEVEL_VARIABLE])}`,
  );
}

export const REDACTED = "[redacted]";

/** Keys whose values are never written, at the top level and one or two levels down. */
const SECRET_KEYS = [
  "authorization",
  "token",
  "secret",
  "credential",
  "password",
  "adminToken",
  "admin_token",
];
export const REDACT_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

/** What a globalvm token (api/auth.ts newTokenSecret) and a JWT look like. */
const SECRET_SHAPES = [
  /gvm_[A-Za-z0-9_-]{16,}/g,
  /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}/g,
];

/** `text` with every token-shaped string replaced by [redacted]. */
export function scrubSecrets(text: string): string {
  let out = text;
  for (const shape of SECRET_SHAPES) out = out.replace(shape, REDACTED);
  return out;
}

/** The fields a trace puts on a line (the logger adds them itself inside withTrace). */
export function traceFields(trace: TraceScope | undefined): Record<string, string> {
  if (!trace) return {};
  return {
    trace_id: trace.traceId,
    span_id: trace.spanId,
    ...(trace.operationId ? { operation_id: trace.operationId } : {}),
  };
}

export interface LoggerOptions {
  service: LogService;
  datacenter?: string;
  /** The datacenter host a host agent runs on. */
  host?: string;
  /** Default: GLOBALVM_LOG_LEVEL, else info. */
  level?: LogLevel;
  /** Where the JSON lines go (default: stderr). */
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? logLevelFrom(),
      base: {
        service: options.service,
        ...(options.datacenter ? { datacenter: options.datacenter } : {}),
        ...(options.host ? { host: options.host } : {}),
      },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin: () => traceFields(currentTrace()),
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      hooks: { streamWrite: scrubSecrets },
    },
    options.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}

/** A file of JSON lines, appended to, made 0600 (its directory 0700) if it does not exist. */
export function logFile(path: string): pino.DestinationStream {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  return pino.destination({ dest: path, sync: true, append: true, mode: 0o600 });
}

/** Several destinations at once, each with its own minimum level. */
export function logStreams(
  streams: { level: LogLevel; stream: pino.DestinationStream | NodeJS.WritableStream }[],
): pino.DestinationStream {
  return pino.multistream(
    streams
      .filter((s) => s.level !== "silent")
      .map((s) => ({ level: s.level as pino.Level, stream: s.stream })),
  );
}

const LINE_LEVEL = /^\[(ERROR|WARN|INFO|DEBUG)\]\s*/;

/** The components' `(line) => void` log on top of a logger: a `[WARN]` lead becomes the level. */
export function lineLog(logger: Logger): LineLog {
  return (line) => {
    const lead = LINE_LEVEL.exec(line);
    const message = lead ? line.slice(lead[0].length) : line;
    const level = (lead?.[1]?.toLowerCase() ?? "info") as "error" | "warn" | "info" | "debug";
    logger[level](message);
  };
}

/** The fields every line has, never repeated in a human line. */
const FRAME_FIELDS = new Set([
  "level",
  "time",
  "service",
  "datacenter",
  "host",
  "msg",
  "trace_id",
  "span_id",
]);

/**
 * A destination that turns JSON lines into the short human lines `globalvm up` prints:
 * `[<prefix>] [WARN] message`. Request lines (they have a `route`) stay in the files only.
 */
export function humanLines(prefix: string, write: (line: string) => void): Writable {
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      for (const text of chunk.toString().split("\n")) {
        if (text === "") continue;
        let record: Record<string, unknown>;
        try {
          record = JSON.parse(text) as Record<string, unknown>;
        } catch {
          write(`[${prefix}] ${text}`);
          continue;
        }
        if ("route" in record) continue;
        const level = String(record.level ?? "info");
        const lead = level === "info" ? "" : `[${level.toUpperCase()}] `;
        const extra = Object.entries(record)
          .filter(([key]) => !FRAME_FIELDS.has(key))
          .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`);
        write(
          `[${prefix}] ${lead}${String(record.msg ?? "")}${extra.length > 0 ? ` (${extra.join(" ")})` : ""}`,
        );
      }
      done();
    },
  });
}
