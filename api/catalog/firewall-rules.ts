import { and, eq } from "drizzle-orm";
import type { FirewallSource } from "../../schemas/firewall-rules.ts";
import type { CatalogDb } from "./db.ts";
import { firewallRules, networks } from "./schema.ts";

/** A rule of a network of the project; undefined for another project's, as for one that does not exist. */
export async function findFirewallRule(db: CatalogDb, projectId: string, networkId: string, ruleId: string) {
  const [row] = await db
    .select({ rule: firewallRules })
    .from(firewallRules)
    .innerJoin(networks, eq(networks.id, firewallRules.networkId))
    .where(
      and(
        eq(firewallRules.id, ruleId),
        eq(firewallRules.networkId, networkId),
        eq(networks.projectId, projectId),
      ),
    )
    .limit(1);
  return row?.rule;
}

/** The source columns of a rule's `source`. */
export function sourceColumns(source: FirewallSource) {
  return { sourceCidr: source.cidr ?? null, sourceVmGroup: source.vm_group ?? null };
}
