import { describe, expect, it } from "vitest";
import {
  ChunkRecordDecoder,
  ChunkRecordError,
  RECORD_HEADER_BYTES,
  writeRecordHeader,
} from "../../common/image-format/chunk-records.ts";
import { MAX_CHUNK_LENGTH } from "../../common/image-format/manifest.ts";
import { seededBytes } from "../support/transfer.ts";

function encode(records: Array<[string, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [digest, data] of records) {
    const header = Buffer.alloc(RECORD_HEADER_BYTES);
    writeRecordHeader(header, 0, digest, data.length);
    parts.push(header, data);
  }
  return Buffer.concat(parts);
}

describe("chunk record stream", () => {
  const records: Array<[string, Buffer]> = Array.from({ length: 20 }, (_, i) => [
    i.toString(16).padStart(64, "0"),
    seededBytes(1 + ((i * 7919) % 4000), i + 1),
  ]);
  const stream = encode(records);

  it("decodes the same records whatever the piece boundaries", () => {
    for (const pieceSize of [1, 7, 36, 37, 4096, 65536, stream.length]) {
      const decoder = new ChunkRecordDecoder();
      const out: Array<[string, Buffer]> = [];
      for (let at = 0; at < stream.length; at += pieceSize) {
        for (const record of decoder.push(stream.subarray(at, at + pieceSize))) {
          out.push([record.digest, Buffer.from(record.data)]);
        }
      }
      expect(decoder.atBoundary).toBe(true);
      expect(out).toEqual(records);
    }
  });

  it("knows when a stream stops inside a record", () => {
    const decoder = new ChunkRecordDecoder();
    [...decoder.push(stream.subarray(0, stream.length - 5))];
    expect(decoder.atBoundary).toBe(false);
  });

  it("rejects a record longer than the maximum chunk length before buffering it", () => {
    const header = Buffer.alloc(RECORD_HEADER_BYTES);
    writeRecordHeader(header, 0, "a".repeat(64), MAX_CHUNK_LENGTH + 1);
    expect(() => [...new ChunkRecordDecoder().push(header)]).toThrow(ChunkRecordError);
  });
});
