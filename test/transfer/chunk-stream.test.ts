import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { dechunk, streamChunkData } from "../../regional-manager/transfer/chunk-stream.ts";
import { seededBytes } from "../support/transfer.ts";

/** The data of `count` chunks of varied lengths, concatenated as the source sends them. */
function chunkData(count: number): Buffer {
  return Buffer.concat(
    Array.from({ length: count }, (_, i) => seededBytes(1000 + ((i * 7919) % 60_000), i + 1)),
  );
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

/**
 * A sink expecting `total` bytes, lending regions of at most `regionBytes` of one buffer (as a
 * ChunkSequence lends the free space of a run), and counting the reads that landed in place.
 */
function collect(total: number, regionBytes = 50_000) {
  const out = Buffer.alloc(total);
  let filled = 0;
  let wire = 0;
  let inPlace = 0;
  let lastRegion: Buffer | undefined;
  return {
    out,
    filled: () => filled,
    wire: () => wire,
    inPlace: () => inPlace,
    sink: {
      region: () => {
        lastRegion = out.subarray(filled, Math.min(total, filled + regionBytes));
        return lastRegion;
      },
      advance: (bytes: number) => {
        filled += bytes;
        if (lastRegion) inPlace++;
      },
      backpressure: () => undefined,
      wire: (bytes: number) => {
        wire += bytes;
      },
    },
  };
}

const head = (status: string, fields: string) => Buffer.from(`HTTP/1.1 ${status}\r\n${fields}\r\n`);

const ask = (url: string, expectedBytes: number, signal?: AbortSignal) => ({
  url,
  token: "t",
  body: Buffer.from("ask"),
  expectedBytes,
  signal,
});

describe("streamChunkData: the pull's chunk data read off the socket", () => {
  it("reads a Content-Length body into the sink's regions, whatever the read boundaries", async () => {
    const body = chunkData(300);
    const { url, seen } = await answering(
      Buffer.concat([head("200 OK", `content-length: ${body.length}\r\n`), body]),
      { writeBytes: 7_777, end: false },
    );
    const sink = collect(body.length);
    await streamChunkData({ ...ask(url, body.length), token: "t0k" }, sink.sink);
    expect(sink.filled()).toBe(body.length);
    expect(sink.out.equals(body)).toBe(true);
    expect(sink.wire()).toBe(body.length);
    // Past the bytes that came with the head, the socket reads straight into the regions.
    expect(sink.inPlace()).toBeGreaterThan(10);
    expect(seen[0]).toMatch(/^POST \/v1\/transfer\/img\/versions\/1\/chunks HTTP\/1\.1\r\n/);
    expect(seen[0]).toContain("Authorization: Bearer t0k");
  });

  it("copies a chunked body with extensions and trailers into the regions", async () => {
    const body = chunkData(120);
    const { url } = await answering(
      Buffer.concat([head("200 OK", "transfer-encoding: chunked\r\n"), chunked(body, 50_000)]),
      { writeBytes: 4_099 },
    );
    const sink = collect(body.length, 3_000);
    await streamChunkData(ask(url, body.length), sink.sink);
    expect(sink.out.equals(body)).toBe(true);
  });

  it("reads a body without framing until the connection ends", async () => {
    const body = chunkData(10);
    const { url } = await answering(Buffer.concat([head("200 OK", ""), body]));
    const sink = collect(body.length);
    await streamChunkData(ask(url, body.length), sink.sink);
    expect(sink.out.equals(body)).toBe(true);
  });

  it("refuses an answer announcing another length, or carrying more than asked", async () => {
    const body = chunkData(5);
    const announced = await answering(
      Buffer.concat([head("200 OK", `content-length: ${body.length}\r\n`), body]),
    );
    await expect(
      streamChunkData(ask(announced.url, body.length - 1), collect(body.length - 1).sink),
    ).rejects.toThrow(
      `the source announced ${body.length} bytes of chunk data where ${body.length - 1} were asked for`,
    );
    await new Promise((resolve) => server?.close(resolve));
    const unframed = await answering(Buffer.concat([head("200 OK", ""), body]));
    await expect(
      streamChunkData(ask(unframed.url, body.length - 1), collect(body.length - 1).sink),
    ).rejects.toThrow("the source sent more data than was asked for");
  });

  it("rejects a connection closed before Content-Length bytes arrived", async () => {
    const body = chunkData(5);
    const { url } = await answering(
      Buffer.concat([head("200 OK", `content-length: ${body.length + 100}\r\n`), body]),
    );
    await expect(
      streamChunkData(ask(url, body.length + 100), collect(body.length + 100).sink),
    ).rejects.toThrow(/closed the connection before the end/);
  });

  it("turns a problem answer into its status, code and detail", async () => {
    const problem = JSON.stringify({ code: "token_expired", detail: "the read token expired" });
    const { url } = await answering(
      Buffer.concat([
        head("401 Unauthorized", `content-length: ${problem.length}\r\n`),
        Buffer.from(problem),
      ]),
    );
    await expect(streamChunkData(ask(url, 1000), collect(1000).sink)).rejects.toMatchObject({
      status: 401,
      code: "token_expired",
    });
  });

  it("stops at what the sink throws, and at an abort", async () => {
    const body = chunkData(50);
    const { url } = await answering(
      Buffer.concat([head("200 OK", `content-length: ${body.length}\r\n`), body]),
    );
    const refusing = {
      ...collect(body.length).sink,
      advance: () => {
        throw new Error("corrupt chunk");
      },
    };
    await expect(streamChunkData(ask(url, body.length), refusing)).rejects.toThrow("corrupt chunk");
    const aborted = AbortSignal.abort(new Error("image deleted"));
    await expect(streamChunkData(ask(url, body.length, aborted), collect(body.length).sink)).rejects.toThrow(
      "image deleted",
    );
  });

  it("waits for backpressure before reading on", async () => {
    const body = chunkData(400);
    const { url } = await answering(
      Buffer.concat([head("200 OK", `content-length: ${body.length}\r\n`), body]),
      {
        writeBytes: 65_536,
      },
    );
    const sink = collect(body.length);
    let waits = 0;
    let releasedAt = 0;
    const slow = {
      ...sink.sink,
      advance: (bytes: number) => {
        // Nothing is read while a wait is pending.
        expect(Date.now()).toBeGreaterThanOrEqual(releasedAt);
        sink.sink.advance(bytes);
      },
      backpressure: () => {
        if (waits++ >= 3) return undefined;
        releasedAt = Date.now() + 20;
        return new Promise<void>((resolve) => setTimeout(resolve, 25));
      },
    };
    await streamChunkData(ask(url, body.length), slow);
    expect(waits).toBeGreaterThan(3);
    expect(sink.out.equals(body)).toBe(true);
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
