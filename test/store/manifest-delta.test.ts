import { describe, expect, it } from "vitest";
import { cutChunks } from "../../common/image-format/chunking.ts";
import { sha256Hex, zeroChunkDigest } from "../../common/image-format/digest.ts";
import { encodeManifest, type Manifest, ManifestError } from "../../common/image-format/manifest.ts";
import {
  applyManifestDelta,
  diffManifests,
  encodeManifestDelta,
} from "../../regional-manager/store/manifest-delta.ts";
import { seededBytes } from "../support/transfer.ts";

function manifestOf(data: Buffer): Manifest {
  return {
    size: data.length,
    digest: sha256Hex(data),
    chunks: cutChunks(data).map((cut) => ({
      digest: cut.zero ? zeroChunkDigest(cut.end - cut.start) : sha256Hex(data.subarray(cut.start, cut.end)),
      length: cut.end - cut.start,
      zero: cut.zero,
    })),
  };
}

describe("manifest deltas", () => {
  const base = seededBytes(4 << 20, 61);
  base.fill(0, 1 << 20, 2 << 20);
  const baseManifest = manifestOf(base);

  it("rebuilds the new manifest exactly and costs little after an insertion", () => {
    const inserted = Buffer.concat([
      base.subarray(0, 400_000),
      seededBytes(100_000, 62),
      base.subarray(400_000),
    ]);
    const next = manifestOf(inserted);
    const delta = encodeManifestDelta(next, diffManifests(baseManifest, next));
    expect(applyManifestDelta(baseManifest, delta)).toEqual(next);
    expect(delta.length).toBeLessThan(encodeManifest(next).length / 10);
  });

  it("rebuilds after scattered writes and from an unrelated base", () => {
    const written = Buffer.from(base);
    for (const at of [10_000, 1_500_000, 3_000_000]) seededBytes(4096, at).copy(written, at);
    const next = manifestOf(written);
    expect(
      applyManifestDelta(baseManifest, encodeManifestDelta(next, diffManifests(baseManifest, next))),
    ).toEqual(next);
    const unrelated = manifestOf(seededBytes(1 << 20, 63));
    expect(
      applyManifestDelta(
        baseManifest,
        encodeManifestDelta(unrelated, diffManifests(baseManifest, unrelated)),
      ),
    ).toEqual(unrelated);
  });

  it("rejects a delta that copies entries the base lacks, or is cut short", () => {
    const next = manifestOf(seededBytes(1 << 20, 64));
    const delta = encodeManifestDelta(next, [{ copy: { start: baseManifest.chunks.length - 1, count: 2 } }]);
    expect(() => applyManifestDelta(baseManifest, delta)).toThrow(ManifestError);
    const good = encodeManifestDelta(next, diffManifests(baseManifest, next));
    expect(() => applyManifestDelta(baseManifest, good.subarray(0, good.length - 3))).toThrow(ManifestError);
  });
});
