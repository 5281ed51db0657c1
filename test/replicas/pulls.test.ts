import { describe, expect, it } from "vitest";
import { VersionPulls } from "../../regional-manager/replicas/pulls.ts";
import type { VersionRecord } from "../../regional-manager/store/image-store.ts";

const record = (imageId: string, version: number, state: VersionRecord["state"] = "available") =>
  ({ imageId, version, state, size: 1, digest: "d", format: "raw", chunkCount: 1 }) as VersionRecord;

/** A pull that ends when the test says, counting how often it started and seeing its signal. */
function controlledPulls(held: Map<string, VersionRecord> = new Map()) {
  const started: Array<{ key: string; signal: AbortSignal; finish: () => void }> = [];
  const pulls = new VersionPulls({
    pull: (imageId, version, signal) =>
      new Promise((resolve, reject) => {
        const key = `${imageId}@${version}`;
        signal.addEventListener("abort", () => reject(signal.reason));
        started.push({ key, signal, finish: () => resolve(record(imageId, version)) });
      }),
    held: (imageId, version) => held.get(`${imageId}@${version}`),
  });
  return { pulls, started };
}

describe("the manager's pulls of image versions", () => {
  it("runs one pull per version, shared by everyone waiting for it, and another after it ends", async () => {
    const { pulls, started } = controlledPulls();
    const first = pulls.ensure("img", 1);
    const second = pulls.ensure("img", 1);
    pulls.ensure("img", 2);
    expect(started.map((s) => s.key)).toEqual(["img@1", "img@2"]);
    expect(pulls.isPulling("img", 1)).toBe(true);
    started[0]?.finish();
    expect(await first).toEqual(await second);
    expect(pulls.isPulling("img", 1)).toBe(false);
    pulls.ensure("img", 1);
    expect(started.map((s) => s.key)).toEqual(["img@1", "img@2", "img@1"]);
  });

  it("answers a version held already without pulling", async () => {
    const { pulls, started } = controlledPulls(new Map([["img@1", record("img", 1)]]));
    expect((await pulls.ensure("img", 1)).state).toBe("available");
    expect(started).toEqual([]);
  });

  it("aborts one version's pull and waits for it to let go; close aborts them all", async () => {
    const { pulls, started } = controlledPulls();
    const dropped = pulls.ensure("img", 1);
    const other = pulls.ensure("img", 2);
    await pulls.abort("img", 1, new Error("dropped"));
    await expect(dropped).rejects.toThrow("dropped");
    expect(started[1]?.signal.aborted).toBe(false);
    expect(pulls.isPulling("img", 1)).toBe(false);
    pulls.close();
    await expect(other).rejects.toBeDefined();
    expect(started[1]?.signal.aborted).toBe(true);
  });
});
