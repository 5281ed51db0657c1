// A version's manifest digest: SHA-256 over its size, its whole-image digest and its ordered
// chunk list (each chunk's length and digest, and whether it is a run of zeros). The catalog
// keeps it from the upload's commit; a manager pulling the version checks the manifest it is
// sent against it, and then every chunk it receives against that manifest: the image assembled
// from them is, chunk by chunk in order, the one the origin verified whole, so a pull need not
// hash the whole image a second time (as casync's index and OCI's manifests identify content).
import { createHash } from "node:crypto";
import type { Manifest } from "./manifest.ts";

/** "sha256:<hex>" of the manifest's canonical form (version 1). */
export function manifestDigest(manifest: Manifest): string {
  const hash = createHash("sha256");
  // Lines are hashed 64 KiB at a time: 15 ms for 131,000 chunks here, against 21-30 ms with
  // one update per chunk.
  let text = `globalvm-manifest-v1\n${manifest.size}\n${manifest.digest}\n${manifest.chunks.length}\n`;
  for (const chunk of manifest.chunks) {
    text += `${chunk.length} ${chunk.digest}${chunk.zero ? " zero" : ""}\n`;
    if (text.length >= 1 << 16) {
      hash.update(text);
      text = "";
    }
  }
  hash.update(text);
  return `sha256:${hash.digest("hex")}`;
}
