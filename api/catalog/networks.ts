import { and, eq } from "drizzle-orm";
import { DEFAULT_NETWORK } from "../../schemas/networks.ts";
import { newId } from "../ids.ts";
import type { CatalogDb } from "./db.ts";
import { networks } from "./schema.ts";

export async function findNetwork(db: CatalogDb, projectId: string, id: string) {
  const [row] = await db
    .select()
    .from(networks)
    .where(and(eq(networks.id, id), eq(networks.projectId, projectId)))
    .limit(1);
  return row;
}

/** A network of the project named by its ID or its name (what a VM group's `network` may say). */
export async function findNetworkByReference(db: CatalogDb, projectId: string, reference: string) {
  const [row] = await db
    .select()
    .from(networks)
    .where(
      and(
        eq(networks.projectId, projectId),
        reference.startsWith("net_") ? eq(networks.id, reference) : eq(networks.name, reference),
      ),
    )
    .limit(1);
  return row;
}

/** Every project has a `default` network from its creation on, as on GCE. */
export async function createDefaultNetwork(db: CatalogDb, projectId: string): Promise<void> {
  await db.insert(networks).values({
    id: newId("network"),
    projectId,
    name: DEFAULT_NETWORK.name,
    cidr: DEFAULT_NETWORK.cidr,
    subnetPrefixLength: DEFAULT_NETWORK.subnetPrefixLength,
  });
}
