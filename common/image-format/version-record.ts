// What a manager answers about one image version it holds: the body of an upload's commit and
// of GET /v1/images/{id}/versions/{n}, read by the upload client and by peer managers.
import type { ImageFormat } from "./formats.ts";

export type { ImageFormat } from "./formats.ts";
export type VersionState = "pending" | "available";

/** What the store knows about one image version held (or being received) in this datacenter. */
export interface VersionRecord {
  imageId: string;
  version: number;
  state: VersionState;
  size: number;
  digest: string;
  format: ImageFormat;
  chunkCount: number;
  /** Assigned when the version becomes available; the compute driver opens `imagePath(localId)`. */
  localId?: string;
  /**
   * The image's project, from the upload token or the control plane's sources: an upload of
   * that project may reuse the chunks of this version once it is available. Absent in records
   * written before it existed: such a version is reused by no upload.
   */
  project?: string;
  /** manifest-digest.ts of its manifest (absent in records written before it existed). */
  manifestDigest?: string;
  /**
   * The manifest was checked against the digest the catalog holds for it (a pull), so a whole
   * version assembled from verified chunks is verified whole without hashing it again.
   */
  manifestVerified?: boolean;
}
