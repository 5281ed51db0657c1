// Addresses on networks. A network gives each datacenter a subnet of its range the first time
// one of its instances is placed there, and each instance an address in its datacenter's subnet.
// The decisions are the plain functions below; the database keeps them true under concurrency:
// allocations in one network are serialized by a lock on the network's row, no two instances of
// a network share an address (unique index instances_network_ip_uq), and no two datacenters
// share a subnet (network_subnets_index_uq).
import { and, eq, isNotNull } from "drizzle-orm";
import {
  blockSize,
  formatCidr,
  formatIpv4,
  type Ipv4Cidr,
  parseCidr,
  parseIpv4,
} from "../../schemas/ipv4.ts";
import { errors } from "../errors.ts";
import type { CatalogDb } from "./db.ts";
import { instances, networkSubnets, networks } from "./schema.ts";

/** The subnet `index` of a network: the index-th block of `subnetPrefixLength` in its range. */
export function subnetBlock(network: Ipv4Cidr, subnetPrefixLength: number, index: number): Ipv4Cidr {
  return { base: network.base + index * blockSize(subnetPrefixLength), prefixLength: subnetPrefixLength };
}

/** The lowest subnet index no datacenter holds, or undefined when the range is used up. */
export function lowestFreeIndex(used: Iterable<number>, count: number): number | undefined {
  const taken = new Set(used);
  for (let index = 0; index < count; index++) if (!taken.has(index)) return index;
  return undefined;
}

/** The datacenter's own address in its subnet: 0 is the subnet itself, 1 its gateway, by convention. */
export const GATEWAY_OFFSET = 1;
/** The first host offset a subnet gives an instance: the one after its gateway. */
export const FIRST_HOST_OFFSET = GATEWAY_OFFSET + 1;

/** A subnet's gateway: the address a datacenter's endpoints reach its guests from. */
export function subnetGateway(subnet: Ipv4Cidr): string {
  return formatIpv4(subnet.base + GATEWAY_OFFSET);
}

/**
 * The next free host offset after `cursor`, going round once: hosts are 2 .. size − 2 (the last
 * is the broadcast address). Starting after the last one given means an address released a
 * moment ago is the last one given again, not the first.
 */
export function nextHostOffset(
  subnet: Ipv4Cidr,
  cursor: number,
  taken: ReadonlySet<number>,
): number | undefined {
  const last = blockSize(subnet.prefixLength) - 2;
  const span = last - FIRST_HOST_OFFSET + 1;
  if (span <= 0) return undefined;
  const start = Math.min(Math.max(cursor, FIRST_HOST_OFFSET - 1), last);
  for (let step = 1; step <= span; step++) {
    const offset = FIRST_HOST_OFFSET + ((start - FIRST_HOST_OFFSET + step + span) % span);
    if (!taken.has(offset)) return offset;
  }
  return undefined;
}

function cidrOf(text: string): Ipv4Cidr {
  const parsed = parseCidr(text);
  if ("error" in parsed) throw new Error(`catalog holds a malformed range ${text}: ${parsed.error}`);
  return parsed;
}

/**
 * Gives a new address in `datacenter`'s subnet of the network (making the subnet first if the
 * network has none there). Call inside the transaction that records the instance: the lock on
 * the network's row is held until it commits, so concurrent allocations never pick one address.
 */
export async function allocateNetworkIp(
  tx: CatalogDb,
  networkId: string,
  datacenter: string,
): Promise<string> {
  const [network] = await tx.select().from(networks).where(eq(networks.id, networkId)).for("update");
  if (!network) throw errors.notFound("network", networkId);
  const range = cidrOf(network.cidr);
  let [subnet] = await tx
    .select()
    .from(networkSubnets)
    .where(and(eq(networkSubnets.networkId, networkId), eq(networkSubnets.datacenter, datacenter)));
  if (!subnet) {
    const used = await tx
      .select({ index: networkSubnets.index })
      .from(networkSubnets)
      .where(eq(networkSubnets.networkId, networkId));
    const count = 2 ** (network.subnetPrefixLength - range.prefixLength);
    const index = lowestFreeIndex(
      used.map((row) => row.index),
      count,
    );
    if (index === undefined) {
      throw errors.conflict(
        "network_full",
        `Network ${network.name} (${network.cidr}) has given all its ${count} subnets of /${network.subnetPrefixLength} to other datacenters; create a larger network for ${datacenter}.`,
      );
    }
    [subnet] = await tx
      .insert(networkSubnets)
      .values({
        networkId,
        datacenter,
        index,
        cidr: formatCidr(subnetBlock(range, network.subnetPrefixLength, index)),
      })
      .returning();
    if (!subnet) throw new Error(`subnet ${index} of ${network.cidr} was not recorded`);
  }
  const block = cidrOf(subnet.cidr);
  const size = blockSize(block.prefixLength);
  const held = await tx
    .select({ ip: instances.networkIp })
    .from(instances)
    .where(and(eq(instances.networkId, networkId), isNotNull(instances.networkIp)));
  const taken = new Set<number>();
  for (const { ip } of held) {
    const value = ip ? parseIpv4(ip) : undefined;
    if (value !== undefined && value >= block.base && value < block.base + size)
      taken.add(value - block.base);
  }
  const offset = nextHostOffset(block, subnet.cursor, taken);
  if (offset === undefined) {
    throw errors.conflict(
      "subnet_full",
      `The subnet ${subnet.cidr} of network ${network.name} in ${datacenter} has no free address; remove instances or use a network with larger subnets.`,
    );
  }
  await tx
    .update(networkSubnets)
    .set({ cursor: offset })
    .where(and(eq(networkSubnets.networkId, networkId), eq(networkSubnets.datacenter, datacenter)));
  return formatIpv4(block.base + offset);
}

/** What a guest's interface needs to know of its network: the on-link prefix is the network's. */
export async function networkOfInstance(db: CatalogDb, networkId: string) {
  const [network] = await db
    .select({ id: networks.id, vni: networks.vni, cidr: networks.cidr })
    .from(networks)
    .where(eq(networks.id, networkId));
  if (!network) return undefined;
  return { id: network.id, vni: network.vni, prefixLength: cidrOf(network.cidr).prefixLength };
}

/** The gateway of `datacenter`'s subnet of the network; undefined while it has none there. */
export async function gatewayInDatacenter(
  db: CatalogDb,
  networkId: string,
  datacenter: string,
): Promise<string | undefined> {
  const [subnet] = await db
    .select({ cidr: networkSubnets.cidr })
    .from(networkSubnets)
    .where(and(eq(networkSubnets.networkId, networkId), eq(networkSubnets.datacenter, datacenter)));
  return subnet ? subnetGateway(cidrOf(subnet.cidr)) : undefined;
}
