import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { isDigest, sha256Hex, zeroChunkDigest } from "../../common/image-format/digest.ts";
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
    chunks: [
      { digest: a, length: 100, zero: false },
      { digest: zeroChunkDigest(100), length: 100, zero: true },
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

  it("checks all but the digests' form of a manifest whose digests were decoded from binary", () => {
    const bad = manifest();
    (bad.chunks[0] as { length: number }).length += 1;
    expect(fieldOf(() => validateManifest(bad, {}, { wellFormedDigests: true }))).toBe("chunks");
    const lying = manifest();
    (lying.chunks[1] as { digest: string }).digest = c;
    expect(fieldOf(() => validateManifest(lying, {}, { wellFormedDigests: true }))).toBe("chunks[1].digest");
    expect(fieldOf(() => validateManifest(manifest(), { size: 1 }, { wellFormedDigests: true }))).toBe(
      "size",
    );
  });

  it("rejects a chunk marked as zeros whose digest is not that of zeros", () => {
    const bad = manifest();
    (bad.chunks[1] as { digest: string }).digest = c;
    expect(fieldOf(() => validateManifest(bad))).toBe("chunks[1].digest");
  });
});

describe("manifest digest", () => {
  it("is the SHA-256 of the canonical form, the same as the catalog recorded at upload", () => {
    // Computed once, by the code that wrote the digests catalogs hold now.
    expect(manifestDigest(manifest())).toBe(
      "sha256:4e60a89abd3859233cdafd1c31928af0600100548a05f8e0f2c15db98fdb32ee",
    );
    // Long enough to be hashed in several pieces: still one line per chunk, in order.
    const chunks = Array.from({ length: 5000 }, (_, i) => ({
      digest: sha256Hex(Buffer.from(String(i))),
      length: 1000 + i,
      zero: false,
    }));
    const long: Manifest = { size: 0, digest: a, chunks };
    const canonical = createHash("sha256").update(`globalvm-manifest-v1\n0\n${a}\n5000\n`);
    for (const chunk of chunks) canonical.update(`${chunk.length} ${chunk.digest}\n`);
    expect(manifestDigest(long)).toBe(`sha256:${canonical.digest("hex")}`);
    // Lengths of every number of decimal digits, powers of ten included.
    const lengths = [1, 9, 10, 99, 100, 999, 1000, 65_536, 1_000_000, 4_194_304];
    const varied: Manifest = {
      size: 0,
      digest: a,
      chunks: lengths.map((length, i) => ({ digest: sha256Hex(Buffer.from([i])), length, zero: false })),
    };
    const text = `globalvm-manifest-v1\n0\n${a}\n${lengths.length}\n${varied.chunks.map((chunk) => `${chunk.length} ${chunk.digest}\n`).join("")}`;
    expect(manifestDigest(varied)).toBe(`sha256:${createHash("sha256").update(text).digest("hex")}`);
  });
});

describe("binary manifest", () => {
  it("round-trips", () => {
    expect(decodeManifest(encodeManifest(manifest()))).toEqual(manifest());
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
        { digest: zeroChunkDigest(100), length: 100, zero: true },
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
