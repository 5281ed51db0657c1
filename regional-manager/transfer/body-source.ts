/*
 * A request body as a source that puts its bytes where the receiver says (a sink), rather than
 * handing over pieces of its own: read off the connection into the receiver's memory
 * (connection-body.ts), or copied there from the pieces of any other body.
 */

/** Where a body's bytes go, in order. */
export interface BodySink {
  /** Where the next bytes go; empty when none fit until backpressure eases. */
  region(): Buffer;
  /** `bytes` bytes were put at the start of the last `region()` (may throw: the body is refused). */
  advance(bytes: number): void;
  /** Asked after each delivery: a promise to wait for before delivering more, when the sink lags. */
  backpressure(): Promise<void> | undefined;
}

export interface BodySource {
  /** Puts the whole body into `sink`; resolves at its end, rejects with the sink's or the body's error. */
  pour(sink: BodySink): Promise<void>;
}

/** A body of pieces, each copied into the sink. */
export function sourceOf(pieces: AsyncIterable<Uint8Array>): BodySource {
  return {
    async pour(sink) {
      for await (const piece of pieces) {
        const input = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
        for (let at = 0; at < input.length; ) {
          const wait = sink.backpressure();
          if (wait) await wait;
          const region = sink.region();
          if (region.length === 0) throw new Error("the sink took no bytes and asked for no wait");
          const take = Math.min(region.length, input.length - at);
          input.copy(region, 0, at, at + take);
          at += take;
          sink.advance(take);
        }
      }
    },
  };
}

/** The body, telling `count` of each delivery as it is made (a whole-image upload's bytes). */
export function countedSource(source: BodySource, count: (bytes: number) => void): BodySource {
  return {
    pour: (sink) =>
      source.pour({
        region: () => sink.region(),
        advance: (bytes) => {
          count(bytes);
          sink.advance(bytes);
        },
        backpressure: () => sink.backpressure(),
      }),
  };
}
