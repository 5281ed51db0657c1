/**
 * What the transfer code tells the control plane, behind an interface the control-plane
 * side implements (catalog update of the image replica and progress of the operation).
 */
export interface ReplicaReport {
  imageId: string;
  version: number;
  state: "transferring" | "available" | "failed";
  /** Set with `available`: the datacenter-local ID the catalog maps the global ID to. */
  localId?: string | undefined;
  digest?: string;
  /** manifest-digest.ts of the version's manifest: what a pull checks the manifest it is sent against. */
  manifestDigest?: string;
  size?: number;
  /** Bytes of the version held (zero runs and chunks held before the pull included), of `bytesTotal`, its size. */
  bytesDone?: number;
  bytesTotal?: number;
  /** Chunk data this pull received: what crossed the network. */
  bytesReceived?: number;
  error?: string;
}

export interface ReplicaReporter {
  reportReplica(report: ReplicaReport): Promise<void>;
}

/** The report of a version that just became available here. */
export function availableReport(
  record: {
    imageId: string;
    version: number;
    localId?: string | undefined;
    digest: string;
    size: number;
    manifestDigest?: string;
  },
  progress: { bytesDone?: number; bytesTotal?: number; bytesReceived?: number } = {},
): ReplicaReport {
  return {
    imageId: record.imageId,
    version: record.version,
    state: "available",
    localId: record.localId,
    digest: record.digest,
    size: record.size,
    ...(record.manifestDigest !== undefined ? { manifestDigest: record.manifestDigest } : {}),
    ...progress,
  };
}
