import { DIGEST_BYTES } from "./digest.ts";
import { MAX_CHUNK_LENGTH } from "./manifest.ts";

/*
 * An upload sends its chunks as a stream of records, many per request (never one round trip
 * per chunk):
 *   32-byte digest | u32 length | `length` bytes of data
 * (A pull needs no headers: it knows the digest and length of every chunk it asks for.)
 */
export const RECORD_HEADER_BYTES = DIGEST_BYTES + 4;

export interface ChunkRecord {
  digest: string;
  data: Buffer;
}

export class ChunkRecordError extends Error {
  readonly code = "INVALID_CHUNK_STREAM";
}

export function writeRecordHeader(target: Buffer, at: number, digest: string, length: number): number {
  target.write(digest, at, DIGEST_BYTES, "hex");
  target.writeUInt32BE(length, at + DIGEST_BYTES);
  return at + RECORD_HEADER_BYTES;
}

/**
 * Parses records out of pieces of a byte stream, whatever their boundaries. A record that
 * lies inside one piece is returned as a view of it (no copy).
 */
export class ChunkRecordDecoder {
  private header = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
  private headerFill = 0;
  private digest = "";
  private body: Buffer | undefined;
  private bodyFill = 0;

  *push(piece: Uint8Array): Generator<ChunkRecord> {
    const input = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    let at = 0;
    while (at < input.length) {
      if (this.body === undefined) {
        if (this.headerFill === 0 && input.length - at >= RECORD_HEADER_BYTES) {
          const length = this.readHeader(input, at);
          at += RECORD_HEADER_BYTES;
          if (input.length - at >= length) {
            yield { digest: this.digest, data: input.subarray(at, at + length) };
            at += length;
            continue;
          }
          this.body = Buffer.allocUnsafe(length);
          this.bodyFill = 0;
          continue;
        }
        const take = Math.min(RECORD_HEADER_BYTES - this.headerFill, input.length - at);
        input.copy(this.header, this.headerFill, at, at + take);
        this.headerFill += take;
        at += take;
        if (this.headerFill < RECORD_HEADER_BYTES) return;
        this.headerFill = 0;
        const length = this.readHeader(this.header, 0);
        this.body = Buffer.allocUnsafe(length);
        this.bodyFill = 0;
      }
      const body = this.body;
      const take = Math.min(body.length - this.bodyFill, input.length - at);
      input.copy(body, this.bodyFill, at, at + take);
      this.bodyFill += take;
      at += take;
      if (this.bodyFill === body.length) {
        this.body = undefined;
        yield { digest: this.digest, data: body };
      }
    }
  }

  /** True when the stream so far ends exactly at a record boundary. */
  get atBoundary(): boolean {
    return this.body === undefined && this.headerFill === 0;
  }

  private readHeader(source: Buffer, at: number): number {
    this.digest = source.toString("hex", at, at + DIGEST_BYTES);
    const length = source.readUInt32BE(at + DIGEST_BYTES);
    if (length < 1 || length > MAX_CHUNK_LENGTH) {
      throw new ChunkRecordError(
        `chunk ${this.digest} declares ${length} bytes; chunks hold 1 to ${MAX_CHUNK_LENGTH}`,
      );
    }
    return length;
  }
}

/**
 * Splits chunks into the requests that carry them, in order, each about `batchBytes` of chunk
 * data: an upload's bodies of records, a pull's lists of digests to ask a peer for.
 */
export function batchByBytes<T>(
  items: readonly T[],
  batchBytes: number,
  chunkOf: (item: T) => { length: number },
): T[][] {
  const batches: T[][] = [];
  let batch: T[] = [];
  let bytes = 0;
  for (const item of items) {
    batch.push(item);
    bytes += chunkOf(item).length;
    if (bytes >= batchBytes) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}
