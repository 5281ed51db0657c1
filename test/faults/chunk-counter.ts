// Counts the chunks a source manager serves, without touching the manager (a source-front.ts
// proxy in front of it): the digests each chunk request asks for and whether the response
// reached its end.
import { chunkRequestImage, startSourceFront } from "../support/source-front.ts";

const DIGEST_BYTES = 32;

export interface ChunkRequest {
  imageId: string;
  digests: string[];
  /** The whole response went through (false when the source or the client died mid-stream). */
  completed: boolean;
  at: number;
  endedAt: number | undefined;
}

export interface ChunkCounter {
  /** The URL to give the source manager as its control plane. */
  controlPlaneUrl: string;
  requests: ChunkRequest[];
  /** The digests asked of the source for one image, in order, each request flattened. */
  digestsFor(imageId: string, since?: number): string[];
  close(): Promise<void>;
}

export async function startChunkCounter(controlPlane: () => string): Promise<ChunkCounter> {
  const requests: ChunkRequest[] = [];
  const front = await startSourceFront(controlPlane, (req, body, forward) => {
    const imageId = chunkRequestImage(req);
    if (imageId === undefined) return forward();
    const digests: string[] = [];
    for (let at = 0; at + DIGEST_BYTES <= body.length; at += DIGEST_BYTES) {
      digests.push(body.subarray(at, at + DIGEST_BYTES).toString("hex"));
    }
    const record: ChunkRequest = { imageId, digests, completed: false, at: Date.now(), endedAt: undefined };
    requests.push(record);
    forward({
      onEnd: (completed) => {
        record.completed = completed;
        record.endedAt = Date.now();
      },
    });
  });
  return {
    ...front,
    requests,
    digestsFor(imageId, since = 0) {
      return requests.filter((r) => r.imageId === imageId && r.at >= since).flatMap((r) => r.digests);
    },
  };
}
