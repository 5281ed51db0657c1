import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { sha256Hex } from "../../regional-manager/store/digest.ts";
import { ChunkRecordEncoder } from "../../regional-manager/transfer/chunk-records.ts";
import { dechunk, streamChunkRecords } from "../../regional-manager/transfer/chunk-stream.ts";
import { seededBytes } from "./helpers.ts";

/** Records of `count` chunks of seeded bytes, encoded as the source sends them. */
function records(count: number): { body: Buffer; chunks: Array<{ digest: string; data: Buffer }> } {
  const encoder = new ChunkRecordEncoder(1 << 16);
  const chunks = Array.from({ length: count }, (_, i) => {
    const data = seededBytes(1000 + ((i * 7919) % 60_000), i + 1);
    return { digest: sha256Hex(data), data };
  });
  const pieces: Buffer[] = [];
  for (const chunk of chunks) {
    const full = encoder.add(chunk.digest, chunk.data);
    if (full) pieces.push(full);
  }
  pieces.push(encoder.take());
  return { body: Buffer.concat(pieces), chunks };
}

function chunked(body: Buffer, pieceBytes: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; at += pieceBytes) {
    const piece = body.subarray(at, at + pieceBytes);
    parts.push(Buffer.from(`${piece.length.toString(16)};ext=1\r\n`), piece, Buffer.from("\r\n"));
  }
  parts.push(Buffer.from("0\r\nx-trailer: 1\r\n\r\n"));
  return Buffer.concat(parts);
}

let server: Server | undefined;
afterEach(async () => {
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
});

/** A server that answers any request with `response`, written in pieces of `writeBytes`. */
async function answering(response: Buffer, options: { writeBytes?: number; end?: boolean } = {}) {
  const seen: string[] = [];
  server = createServer((socket: Socket) => {
    let request = Buffer.alloc(0);
    socket.on("data", (data) => {
      request = Buffer.concat([request, data]);
      const headEnd = request.indexOf("\r\n\r\n");
      if (headEnd === -1) return;
      const length = Number(/content-length: (\d+)/i.exec(request.toString("latin1", 0, headEnd))?.[1]);
      if (request.length < headEnd + 4 + length) return;
      seen.push(request.toString("latin1", 0, headEnd));
      const step = options.writeBytes ?? response.length;
      for (let at = 0; at < response.length; at += step) socket.write(response.subarray(at, at + step));
      if (options.end !== false) socket.end();
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return { url: `http://127.0.0.1:${address.port}/v1/transfer/img/versions/1/chunks`, seen };
}

function collect() {
  const got: Array<{ digest: string; data: Buffer }> = [];
  let wire = 0;
  return {
    got,
    wire: () => wire,
    sink: {
      record: (digest: string, data: Buffer) => got.push({ digest, data: Buffer.from(data) }),
      backpressure: () => undefined,
      wire: (bytes: number) => {
        wire += bytes;
      },
    },
  };
}

const head = (status: string, fields: string) => Buffer.from(`HTTP/1.1 ${status}\r\n${fields}\r\n`);

describe("streamChunkRecords: the pull's chunk stream read off the socket", () => {
  it("parses records framed by Content-Length, whatever the read boundaries", async () => {
    const { body, chunks } = records(300);
    const { url, seen } = await answering(
      Buffer.concat([head("200 OK", `content-length: ${body.length}\r\n`), body]),
      { writeBytes: 7_777, end: false },
    );
    const sink = collect();
    const result = await streamChunkRecords({ url, token: "t0k", body: Buffer.from("ask") }, sink.sink);
    expect(result.atBoundary).toBe(true);
    expect(sink.got.map((c) => c.digest)).toEqual(chunks.map((c) => c.digest));
    expect(sink.got.every((c, i) => c.data.equals(chunks[i]?.data as Buffer))).toBe(true);
    expect(sink.wire()).toBe(body.length);
    expect(seen[0]).toMatch(/^POST \/v1\/transfer\/img\/versions\/1\/chunks HTTP\/1\.1\r\n/);
    expect(seen[0]).toContain("Authorization: Bearer t0k");
  });

  it("parses a chunked body with extensions and trailers", async () => {
    const { body, chunks } = records(120);
    const { url } = await answering(
      Buffer.concat([head("200 OK", "transfer-encoding: chunked\r\n"), chunked(body, 50_000)]),
      { writeBytes: 4_099 },
    );
    const sink = collect();
    await streamChunkRecords({ url, token: "t", body: Buffer.alloc(0) }, sink.sink);
    expect(sink.got.map((c) => c.digest)).toEqual(chunks.map((c) => c.digest));
  });

  it("reads a body without framing until the connection ends", async () => {
    const { body, chunks } = records(10);
    const { url } = await answering(Buffer.concat([head("200 OK", ""), body]));
    const sink = collect();
    await streamChunkRecords({ url, token: "t", body: Buffer.alloc(0) }, sink.sink);
    expect(sink.got).toHaveLength(chunks.length);
  });

  it("reports a stream cut inside a record as not at a boundary", async () => {
    const { body } = records(5);
    const cut = body.subarray(0, body.length - 10);
    const { url } = await answering(Buffer.concat([head("200 OK", ""), cut]));
    const result = await streamChunkRecords({ url, token: "t", body: Buffer.alloc(0) }, collect().sink);
    expect(result.atBoundary).toBe(false);
  });

  it("rejects a connection closed before Content-Length bytes arrived", async () => {
    const { body } = records(5);
    const { url } = await answering(
      Buffer.concat([head("200 OK", `content-length: ${body.length + 100}\r\n`), body]),
    );
    await expect(
      streamChunkRecords({ url, token: "t", body: Buffer.alloc(0) }, collect().sink),
    ).rejects.toThrow(/closed the connection before the end/);
  });

  it("turns a problem answer into its status, code and detail", async () => {
    const problem = JSON.stringify({ code: "TOKEN_EXPIRED", detail: "the read token expired" });
    const { url } = await answering(
      Buffer.concat([
        head("401 Unauthorized", `content-length: ${problem.length}\r\n`),
        Buffer.from(problem),
      ]),
    );
    await expect(
      streamChunkRecords({ url, token: "t", body: Buffer.alloc(0) }, collect().sink),
    ).rejects.toMatchObject({ status: 401, code: "TOKEN_EXPIRED" });
  });

  it("stops at what the sink throws, and at an abort", async () => {
    const { body } = records(50);
    const { url } = await answering(
      Buffer.concat([head("200 OK", `content-length: ${body.length}\r\n`), body]),
    );
    const refusing = {
      ...collect().sink,
      record: () => {
        throw new Error("corrupt chunk");
      },
    };
    await expect(streamChunkRecords({ url, token: "t", body: Buffer.alloc(0) }, refusing)).rejects.toThrow(
      "corrupt chunk",
    );
    const aborted = AbortSignal.abort(new Error("image deleted"));
    await expect(
      streamChunkRecords({ url, token: "t", body: Buffer.alloc(0), signal: aborted }, collect().sink),
    ).rejects.toThrow("image deleted");
  });

  it("waits for backpressure before reading on", async () => {
    const { body, chunks } = records(400);
    const { url } = await answering(
      Buffer.concat([head("200 OK", `content-length: ${body.length}\r\n`), body]),
      {
        writeBytes: 65_536,
      },
    );
    const sink = collect();
    let waits = 0;
    let releasedAt = 0;
    const slow = {
      ...sink.sink,
      record: (digest: string, data: Buffer) => {
        // Nothing is read while a wait is pending.
        expect(Date.now()).toBeGreaterThanOrEqual(releasedAt);
        sink.sink.record(digest, data);
      },
      backpressure: () => {
        if (waits++ >= 3) return undefined;
        releasedAt = Date.now() + 20;
        return new Promise<void>((resolve) => setTimeout(resolve, 25));
      },
    };
    await streamChunkRecords({ url, token: "t", body: Buffer.alloc(0) }, slow);
    expect(waits).toBeGreaterThan(3);
    expect(sink.got).toHaveLength(chunks.length);
  });
});

describe("dechunk", () => {
  it("refuses a malformed chunk size and a chunk without its CRLF", () => {
    const framing = () => ({ kind: "chunked" as const, state: "size" as const, line: "", remaining: 0 });
    expect(() => dechunk(framing(), Buffer.from("zz\r\n"), () => {})).toThrow(/invalid chunk size/);
    expect(() => dechunk(framing(), Buffer.from("2\r\nabX\r\n"), () => {})).toThrow(/does not end with CRLF/);
    const data: string[] = [];
    const state = framing();
    const input = Buffer.from("3\r\nabc\r\n0\r\n\r\n");
    // Fed a byte at a time, it ends exactly at the last empty line.
    const ends = [...input].map((byte) =>
      dechunk(state, Buffer.from([byte]), (d) => data.push(d.toString())),
    );
    expect(data.join("")).toBe("abc");
    expect(ends.indexOf(true)).toBe(input.length - 1);
  });
});
