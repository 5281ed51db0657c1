import { describe, expect, it } from "vitest";
import { chunkDigest, isDigest, sha256Hex, zeroChunkDigest } from "../../common/image-format/digest.ts";
import {
  decodeDigestList,
  decodeManifest,
  encodeDigestList,
  encodeManifest,
  MAX_CHUNK_LENGTH,
  type Manifest,
  ManifestError,
  referencedDigests,
  validateManifest,
} from "../../common/image-format/manifest.ts";
import { manifestDigest } from "../../common/image-format/manifest-digest.ts";
import { missingChunkRefs } from "../../regional-manager/store/image-layout.ts";
import {
  isImageId,
  isLocalId,
  isVersion,
  unreferencedDigests,
} from "../../regional-manager/store/image-store.ts";

const a = sha256Hex(Buffer.from("a"));
const b = sha256Hex(Buffer.from("b"));
const c = sha256Hex(Buffer.from("c"));

function manifest(overrides: Partial<Manifest> = {}): Manifest {
  return {
    size: 300,
    digest: sha256Hex(Buffer.from("whole")),
    chunkHash: "sha256",
    chunks: [
      { digest: a, length: 100, zero: false },
      { digest: zeroChunkDigest(100, "sha256"), length: 100, zero: true },
      { digest: b, length: 100, zero: false },
    ],
    ...overrides,
  };
}

function fieldOf(run: () => void): string | undefined {
  try {
    run();
  } catch (error) {
    if (error instanceof ManifestError) return error.field;
    throw error;
  }
  return undefined;
}

describe("digests", () => {
  it("accepts only 64 lowercase hex digits", () => {
    expect(isDigest(a)).toBe(true);
    expect(isDigest(a.toUpperCase())).toBe(false);
    expect(isDigest(a.slice(1))).toBe(false);
    expect(isDigest(`../../${a.slice(6)}`)).toBe(false);
    expect(isDigest(`${a}\n`)).toBe(false);
    expect(isDigest(42)).toBe(false);
  });
});

describe("validateManifest", () => {
  it("accepts a consistent manifest", () => {
    expect(() => validateManifest(manifest())).not.toThrow();
  });

  it("rejects a chunk digest that is not a digest, naming the chunk", () => {
    const bad = manifest();
    (bad.chunks[2] as { digest: string }).digest = "not-a-digest";
    expect(fieldOf(() => validateManifest(bad))).toBe("chunks[2].digest");
  });

  it("rejects a digest that tries path traversal", () => {
    const bad = manifest();
    (bad.chunks[0] as { digest: string }).digest = `../../../etc/passwd${"0".repeat(45)}`;
    expect(fieldOf(() => validateManifest(bad))).toBe("chunks[0].digest");
    expect(fieldOf(() => validateManifest(manifest({ digest: "../x" })))).toBe("digest");
  });

  it("rejects a chunk larger than the maximum", () => {
    const bad = manifest({ size: 200 + MAX_CHUNK_LENGTH + 1 });
    (bad.chunks[0] as { length: number }).length = MAX_CHUNK_LENGTH + 1;
    expect(fieldOf(() => validateManifest(bad))).toBe("chunks[0].length");
  });

  it("rejects empty chunks", () => {
    const bad = manifest({ size: 200 });
    (bad.chunks[0] as { length: number }).length = 0;
    expect(fieldOf(() => validateManifest(bad))).toBe("chunks[0].length");
  });

  it("rejects chunks that do not add up to the declared size", () => {
    expect(fieldOf(() => validateManifest(manifest({ size: 301 })))).toBe("chunks");
    expect(fieldOf(() => validateManifest(manifest({ size: 299 })))).toBe("chunks");
  });

  it("rejects a size or digest other than the one expected", () => {
    expect(fieldOf(() => validateManifest(manifest(), { size: 400 }))).toBe("size");
    expect(fieldOf(() => validateManifest(manifest(), { digest: a }))).toBe("digest");
  });

  it("rejects a chunk marked as zeros whose digest is not that of zeros", () => {
    const bad = manifest();
    (bad.chunks[1] as { digest: string }).digest = c;
    expect(fieldOf(() => validateManifest(bad))).toBe("chunks[1].digest");
  });
});

/** manifest(), its chunks hashed with BLAKE3. */
function blake3Manifest(): Manifest {
  const [x, y] = ["a", "b"].map((text) => chunkDigest(Buffer.from(text), "blake3")) as [string, string];
  return manifest({
    chunkHash: "blake3",
    chunks: [
      { digest: x, length: 100, zero: false },
      { digest: zeroChunkDigest(100, "blake3"), length: 100, zero: true },
      { digest: y, length: 100, zero: false },
    ],
  });
}

describe("chunk hashes", () => {
  it("hash chunks with BLAKE3 or SHA-256, and zero runs to different digests", () => {
    expect(chunkDigest(Buffer.alloc(0), "blake3")).toBe(
      "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    );
    expect(chunkDigest(Buffer.from("a"), "sha256")).toBe(a);
    expect(zeroChunkDigest(100, "blake3")).toBe(chunkDigest(Buffer.alloc(100), "blake3"));
    expect(zeroChunkDigest(100, "blake3")).not.toBe(zeroChunkDigest(100, "sha256"));
  });

  it("are part of a manifest: validated, and a zero run's digest must be that hash's", () => {
    expect(() => validateManifest(blake3Manifest())).not.toThrow();
    expect(fieldOf(() => validateManifest({ ...manifest(), chunkHash: "md5" as "sha256" }))).toBe(
      "chunkHash",
    );
    // SHA-256's digest of zeros in a BLAKE3 manifest is not its zeros.
    const mixed = blake3Manifest();
    (mixed.chunks[1] as { digest: string }).digest = zeroChunkDigest(100, "sha256");
    expect(fieldOf(() => validateManifest(mixed))).toBe("chunks[1].digest");
  });

  it("are part of a manifest's identity: the same entries under another hash are another manifest", () => {
    const older = manifest();
    const relabelled = { ...older, chunkHash: "blake3" as const };
    expect(manifestDigest(relabelled)).not.toBe(manifestDigest(older));
    // SHA-256 manifests keep the digest they had before BLAKE3 (the catalog holds those):
    // this one's, computed by the code before it.
    expect(manifestDigest(older)).toBe(
      "sha256:4e60a89abd3859233cdafd1c31928af0600100548a05f8e0f2c15db98fdb32ee",
    );
  });
});

describe("binary manifest", () => {
  it("round-trips, with its chunk hash as the format version", () => {
    expect(decodeManifest(encodeManifest(manifest()))).toEqual(manifest());
    expect(encodeManifest(manifest()).readUInt32BE(4)).toBe(1);
    const newer = encodeManifest(blake3Manifest());
    expect(newer.readUInt32BE(4)).toBe(2);
    expect(decodeManifest(newer)).toEqual(blake3Manifest());
    newer.writeUInt32BE(3, 4);
    expect(() => decodeManifest(newer)).toThrow(/unknown format version/);
  });

  it("rejects a foreign or truncated buffer", () => {
    expect(() =>
      decodeManifest(Buffer.from("hello world, not a manifest at all.....................")),
    ).toThrow(ManifestError);
    const encoded = encodeManifest(manifest());
    expect(() => decodeManifest(encoded.subarray(0, encoded.length - 1))).toThrow(ManifestError);
  });

  it("round-trips digest lists and rejects partial digests", () => {
    expect(decodeDigestList(encodeDigestList([a, b]))).toEqual([a, b]);
    expect(() => decodeDigestList(Buffer.alloc(33))).toThrow(ManifestError);
  });
});

describe("which chunks are missing", () => {
  it("lists absent non-zero chunks once each, in manifest order", () => {
    const m = manifest({
      size: 500,
      chunks: [
        { digest: b, length: 100, zero: false },
        { digest: a, length: 100, zero: false },
        { digest: zeroChunkDigest(100, "sha256"), length: 100, zero: true },
        { digest: b, length: 100, zero: false },
        { digest: c, length: 100, zero: false },
      ],
    });
    const digests = (isStored: (digest: string) => boolean) =>
      missingChunkRefs(m, isStored).map((chunk) => chunk.digest);
    expect(digests(() => false)).toEqual([b, a, c]);
    expect(digests((digest) => digest === a)).toEqual([b, c]);
    expect(digests(() => true)).toEqual([]);
    // The manifest's own entries, lengths included.
    expect(missingChunkRefs(m, () => false)[0]).toBe(m.chunks[0]);
  });

  it("finds the stored chunks no manifest references", () => {
    const referenced = referencedDigests(manifest());
    expect(referenced).toEqual(new Set([a, b]));
    expect(unreferencedDigests([a, b, c], referenced)).toEqual(new Set([c]));
  });
});

describe("identifiers", () => {
  it("accepts image ids that are safe directory names only", () => {
    expect(isImageId("img_01HZ.base-v2")).toBe(true);
    for (const bad of ["..", ".", "a/b", "../etc", "", "a".repeat(129), "a\0b", "-x"]) {
      expect(isImageId(bad)).toBe(false);
    }
  });

  it("accepts positive integer versions and local ids of the store's form", () => {
    expect(isVersion(1)).toBe(true);
    expect(isVersion(0)).toBe(false);
    expect(isVersion(1.5)).toBe(false);
    expect(isLocalId("img-0123456789abcdef")).toBe(true);
    expect(isLocalId("img-../../etc/passwd")).toBe(false);
  });
});
