// W3C Trace Context (https://www.w3.org/TR/trace-context/), version 00: the `traceparent`
// header that carries one request's trace from the control plane to the managers and into the
// operations it starts, so that `grep <trace_id>` over every process's logs tells one story.
// Parsing and formatting are plain functions; the trace of the work under way is kept in an
// AsyncLocalStorage scope (`withTrace`), which the logger (common/log.ts) and the HTTP clients
// read, so a trace reaches every log line and outgoing request of a request or an operation
// without being passed through every call.
import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";

export const TRACEPARENT_HEADER = "traceparent";

export interface TraceContext {
  /** 32 lowercase hex digits, not all zero. */
  traceId: string;
  /** 16 lowercase hex digits, not all zero: the span of the work this process does. */
  spanId: string;
  /** The trace flags byte; bit 0 is `sampled`. */
  flags: number;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * The trace a `traceparent` header names, or undefined when the header is absent or invalid
 * (the receiver then starts a trace of its own, as the specification says). Version 00 must
 * have exactly four fields; a later version may append fields, read as version 00; version ff
 * and all-zero IDs are invalid.
 */
export function parseTraceparent(header: string | null | undefined): TraceContext | undefined {
  if (header === undefined || header === null) return undefined;
  const match = TRACEPARENT.exec(header.trim());
  if (!match) return undefined;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
    string | undefined,
  ];
  if (version === "ff") return undefined;
  if (version === "00" && rest !== undefined) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, flags: Number.parseInt(flags, 16) };
}

/** The `traceparent` header (version 00) of a trace context. */
export function formatTraceparent(context: TraceContext): string {
  return `00-${context.traceId}-${context.spanId}-${(context.flags & 0xff).toString(16).padStart(2, "0")}`;
}

export function isTraceId(text: string): boolean {
  return /^[0-9a-f]{32}$/.test(text) && !/^0+$/.test(text);
}

function randomHex(bytes: number): string {
  for (;;) {
    const hex = randomBytes(bytes).toString("hex");
    if (!/^0+$/.test(hex)) return hex;
  }
}

export function newTraceId(): string {
  return randomHex(16);
}

export function newSpanId(): string {
  return randomHex(8);
}

/** A new span of `parent`'s trace (a request this process makes, or the work of a request it got). */
export function childSpan(parent: Pick<TraceContext, "traceId" | "flags">): TraceContext {
  return { traceId: parent.traceId, spanId: newSpanId(), flags: parent.flags };
}

/** A trace of its own, for work nobody traced: sampled, as every trace here is logged. */
export function newTrace(): TraceContext {
  return { traceId: newTraceId(), spanId: newSpanId(), flags: 1 };
}

/** What the work under way is: its trace, and the operation it runs, if any. */
export interface TraceScope extends TraceContext {
  operationId?: string;
}

const scope = new AsyncLocalStorage<TraceScope>();

/** Runs `work` (and everything it starts) in `trace`: its log lines and requests carry it. */
export function withTrace<T>(trace: TraceScope, work: () => T): T {
  return scope.run(trace, work);
}

/** The trace of the work under way, if it has one. */
export function currentTrace(): TraceScope | undefined {
  return scope.getStore();
}

/**
 * The `traceparent` of a request made now: a new span of the current trace, or nothing
 * outside a trace (the receiver starts one).
 */
export function outgoingTraceparent(): Record<string, string> {
  const trace = currentTrace();
  return trace ? { [TRACEPARENT_HEADER]: formatTraceparent(childSpan(trace)) } : {};
}
