// W3C trace context: the traceparent parser and formatter, and the trace scope of the work under way.
import { describe, expect, it } from "vitest";
import {
  childSpan,
  currentTrace,
  formatTraceparent,
  isTraceId,
  newTrace,
  outgoingTraceparent,
  parseTraceparent,
  withTrace,
} from "../../common/trace-context.ts";

const VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("parseTraceparent", () => {
  it("reads version 00", () => {
    expect(parseTraceparent(VALID)).toEqual({
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      flags: 1,
    });
    expect(parseTraceparent(` ${VALID.replace(/01$/, "00")} `)?.flags).toBe(0);
  });

  it("reads a later version's first four fields and ignores what it appends", () => {
    expect(
      parseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes")?.traceId,
    ).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
  });

  it.each([
    ["absent", undefined],
    ["null", null],
    ["empty", ""],
    ["garbage", "hello"],
    ["version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
    ["version 00 with a fifth field", `${VALID}-extra`],
    ["an all-zero trace ID", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
    ["an all-zero span ID", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"],
    ["uppercase hex", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"],
    ["a short trace ID", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"],
    ["a long span ID", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7a-01"],
    ["a one-digit version", "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
    ["missing flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"],
    ["non-hex flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz"],
    ["other separators", "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"],
  ])("refuses %s", (_what, header) => {
    expect(parseTraceparent(header)).toBeUndefined();
  });
});

describe("formatTraceparent", () => {
  it("writes version 00 and round-trips", () => {
    const parsed = parseTraceparent(VALID);
    expect(parsed && formatTraceparent(parsed)).toBe(VALID);
    expect(formatTraceparent({ traceId: "a".repeat(32), spanId: "b".repeat(16), flags: 0 })).toBe(
      `00-${"a".repeat(32)}-${"b".repeat(16)}-00`,
    );
  });

  it("new traces and child spans are valid and keep the trace", () => {
    const trace = newTrace();
    expect(isTraceId(trace.traceId)).toBe(true);
    expect(parseTraceparent(formatTraceparent(trace))).toEqual(trace);
    const child = childSpan(trace);
    expect(child.traceId).toBe(trace.traceId);
    expect(child.spanId).not.toBe(trace.spanId);
    expect(child.spanId).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe("the trace scope", () => {
  it("follows the work it runs, across awaits, and sends a new span of it", async () => {
    expect(currentTrace()).toBeUndefined();
    expect(outgoingTraceparent()).toEqual({});
    const trace = { ...newTrace(), operationId: "op_1" };
    await withTrace(trace, async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      expect(currentTrace()).toBe(trace);
      const sent = parseTraceparent(outgoingTraceparent().traceparent);
      expect(sent?.traceId).toBe(trace.traceId);
      expect(sent?.spanId).not.toBe(trace.spanId);
    });
    expect(currentTrace()).toBeUndefined();
  });
});
