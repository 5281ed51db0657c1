import { and, asc, eq, isNotNull, max } from "drizzle-orm";
import type { UploadTicket } from "../../schemas/managers.ts";
import { errors } from "../errors.ts";
import type { TransferTokenSigner } from "../signing.ts";
import { datacenterStatus } from "./datacenter-status.ts";
import type { CatalogDb } from "./db.ts";
import { datacenters, type images, imageVersions } from "./schema.ts";

/**
 * An upload of the image's next version goes to a live manager of its origin region. The
 * version number is only taken when the manager reports the upload committed, so an
 * interrupted upload resumes under the same number. The ticket allows at most `maxBytes`
 * (what the project's storage quota leaves, or the size the client declared): the manager
 * refuses a version that declares more.
 */
export async function issueUploadTicket(
  db: CatalogDb,
  signer: TransferTokenSigner,
  image: typeof images.$inferSelect,
  now: Date,
  maxBytes: number,
): Promise<UploadTicket | null> {
  const candidates = await db
    .select()
    .from(datacenters)
    .where(and(eq(datacenters.region, image.originRegion), isNotNull(datacenters.managerUrl)))
    .orderBy(asc(datacenters.name));
  const origin =
    candidates.find((dc) => datacenterStatus(dc.lastHeartbeatAt, now) === "up") ??
    candidates.find((dc) => datacenterStatus(dc.lastHeartbeatAt, now) === "degraded");
  if (!origin?.managerUrl) return null;
  const [latest] = await db
    .select({ version: max(imageVersions.version) })
    .from(imageVersions)
    .where(eq(imageVersions.imageId, image.id));
  const version = (latest?.version ?? 0) + 1;
  const { token, expiresAt } = await signer.sign({
    imageId: image.id,
    version,
    datacenter: origin.name,
    action: "upload",
    maxBytes,
    projectId: image.projectId,
  });
  return {
    image_id: image.id,
    version,
    datacenter: origin.name,
    url: origin.managerUrl,
    token,
    expires_at: expiresAt.toISOString(),
    max_bytes: maxBytes,
  };
}

export function noManagerError(region: string) {
  return errors.conflict(
    "origin_unavailable",
    `No regional manager of region ${region} is up to receive the upload; start one ('globalvm serve regional-manager') and retry.`,
  );
}
