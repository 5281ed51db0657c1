// Slows the chunks one source manager serves, without touching the manager (a source-front.ts
// proxy in front of it): chunk responses leave at `bytesPerSecond` in all, so a transfer lasts
// long enough to be watched.
import { setTimeout as sleep } from "node:timers/promises";
import { chunkRequestImage, type SourceFront, startSourceFront } from "./source-front.ts";

export type ThrottledSource = SourceFront;

export function startThrottledSource(
  controlPlane: () => string,
  bytesPerSecond: number,
): Promise<ThrottledSource> {
  // One budget for every chunk response: the next byte may leave no earlier than this.
  let nextFree = Date.now();
  const pace = async (bytes: number) => {
    const due = Math.max(Date.now(), nextFree);
    nextFree = due + (bytes / bytesPerSecond) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
  };
  return startSourceFront(controlPlane, (req, _body, forward) =>
    forward(chunkRequestImage(req) === undefined ? {} : { pace }),
  );
}
