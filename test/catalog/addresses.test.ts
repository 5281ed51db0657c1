// Address management: subnets per datacenter and addresses per instance, decided by plain
// functions and kept unique by the database, on both catalogs, under concurrency and restarts.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { and, eq } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import {
  allocateNetworkIp,
  lowestFreeIndex,
  nextHostOffset,
  subnetBlock,
  subnetGateway,
} from "../../api/catalog/addresses.ts";
import { type Catalog, type CatalogLocation, openCatalog } from "../../api/catalog/db.ts";
import {
  datacenters,
  images,
  instances,
  networkSubnets,
  networks,
  projects,
  regions,
  vmGroups,
} from "../../api/catalog/schema.ts";
import { ApiError } from "../../api/errors.ts";
import { newId } from "../../api/ids.ts";
import { formatCidr, parseCidr } from "../../schemas/ipv4.ts";
import { CATALOG_KINDS, type CatalogKind, createTestDatabaseUrl } from "../support/catalogs.ts";

describe("address decisions", () => {
  const block = { base: 0x0a000000, prefixLength: 28 }; // 10.0.0.0/28: hosts .2 to .14

  it("takes the next free host after the cursor, going round once", () => {
    expect(nextHostOffset(block, 1, new Set())).toBe(2);
    expect(nextHostOffset(block, 5, new Set([6, 7]))).toBe(8);
    expect(nextHostOffset(block, 14, new Set())).toBe(2);
    expect(nextHostOffset(block, 14, new Set([2, 3]))).toBe(4);
  });

  it("never gives the subnet, gateway or broadcast address, and says when none is left", () => {
    const given = new Set<number>();
    let cursor = 1;
    for (;;) {
      const next = nextHostOffset(block, cursor, given);
      if (next === undefined) break;
      given.add(next);
      cursor = next;
    }
    expect([...given].sort((a, b) => a - b)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    expect(nextHostOffset({ base: 0, prefixLength: 31 }, 1, new Set())).toBeUndefined();
  });

  it("numbers subnets within the network's range and reuses a freed index", () => {
    const range = parseCidr("10.128.0.0/9") as { base: number; prefixLength: number };
    expect(formatCidr(subnetBlock(range, 20, 0))).toBe("10.128.0.0/20");
    expect(formatCidr(subnetBlock(range, 20, 3))).toBe("10.128.48.0/20");
    expect(lowestFreeIndex([0, 2], 4)).toBe(1);
    expect(lowestFreeIndex([0, 1], 2)).toBeUndefined();
  });

  it("a subnet's gateway is its address after the subnet's own, the one before the first host", () => {
    const range = parseCidr("10.128.0.0/9") as { base: number; prefixLength: number };
    expect(subnetGateway(subnetBlock(range, 20, 3))).toBe("10.128.48.1");
    expect(subnetGateway(block)).toBe("10.0.0.1");
    expect(nextHostOffset(block, 0, new Set())).toBe(2);
  });
});

async function locationOf(kind: CatalogKind, dir: string): Promise<CatalogLocation> {
  return kind === "postgres"
    ? { databaseUrl: await createTestDatabaseUrl() }
    : { dataDir: join(dir, "catalog") };
}

describe.each(CATALOG_KINDS)("addresses in the catalog (%s)", (kind) => {
  const dir = mkdtempSync(join(tmpdir(), "gvm-addresses-"));
  const projectId = newId("project");
  const imageId = newId("image");
  const groupId = newId("vmGroup");
  const small = newId("network");
  const wide = newId("network");
  let location: CatalogLocation;
  let catalog: Catalog;

  afterAll(async () => {
    await catalog?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Records an instance of the group in `datacenter` with a fresh address, as the orchestrator does. */
  const addInstance = (network: string, datacenter: string) =>
    catalog.db.transaction(async (tx) => {
      const [row] = await tx
        .insert(instances)
        .values({
          id: newId("instance"),
          vmGroupId: groupId,
          ordinal: Math.floor(Math.random() * 1e9),
          datacenter,
          networkId: network,
          networkIp: await allocateNetworkIp(tx, network, datacenter),
        })
        .returning();
      return row as typeof instances.$inferSelect;
    });

  it("gives each datacenter its own subnet, and 20 concurrent instances 20 distinct addresses", async () => {
    location = await locationOf(kind, dir);
    catalog = openCatalog(location);
    await catalog.migrate();
    const { db } = catalog;
    await db.insert(projects).values({ id: projectId, name: "acme" });
    await db.insert(regions).values({ name: "eu-west", displayName: "eu-west" });
    for (const name of ["eu-west-a", "eu-west-b", "eu-west-c"]) {
      await db.insert(datacenters).values({
        name,
        region: "eu-west",
        driver: "qemu",
        capacityVcpus: 4,
        capacityMemoryMb: 4096,
        capacityDiskBytes: 1e10,
      });
    }
    // 10.60.0.0/27 in /28s: two subnets of 13 hosts each.
    await db.insert(networks).values([
      { id: small, projectId, name: "small", cidr: "10.60.0.0/27", subnetPrefixLength: 28 },
      { id: wide, projectId, name: "wide", cidr: "10.70.0.0/16", subnetPrefixLength: 24 },
    ]);
    await db
      .insert(images)
      .values({ id: imageId, projectId, name: "web", format: "raw", originRegion: "eu-west" });
    await db.insert(vmGroups).values({
      id: groupId,
      projectId,
      name: "web",
      imageId,
      networkId: wide,
      region: "eu-west",
      size: 1,
      vcpus: 1,
      memoryMb: 128,
    });

    const rows = await Promise.all(Array.from({ length: 20 }, () => addInstance(wide, "eu-west-a")));
    const addresses = rows.map((row) => row.networkIp);
    expect(new Set(addresses).size).toBe(20);
    for (const address of addresses) expect(address).toMatch(/^10\.70\.0\.(\d+)$/);
    const other = await addInstance(wide, "eu-west-b");
    expect(other.networkIp).toMatch(/^10\.70\.1\.\d+$/);
    const subnets = await db.select().from(networkSubnets).where(eq(networkSubnets.networkId, wide));
    expect(subnets.map((s) => [s.datacenter, s.cidr]).sort()).toEqual([
      ["eu-west-a", "10.70.0.0/24"],
      ["eu-west-b", "10.70.1.0/24"],
    ]);
  });

  it("refuses a second instance with an address another holds", async () => {
    const [taken] = await catalog.db.select().from(instances).where(eq(instances.networkId, wide)).limit(1);
    await expect(
      catalog.db.insert(instances).values({
        id: newId("instance"),
        vmGroupId: groupId,
        ordinal: 1e9 + 1,
        datacenter: "eu-west-a",
        networkId: wide,
        networkIp: taken?.networkIp as string,
      }),
    ).rejects.toThrow();
  });

  it("does not give a released address again at once", async () => {
    const first = await addInstance(small, "eu-west-a");
    await catalog.db.delete(instances).where(eq(instances.id, first.id));
    const second = await addInstance(small, "eu-west-a");
    expect(second.networkIp).not.toBe(first.networkIp);
  });

  it("says which subnet is full, and which network has no subnet left for a datacenter", async () => {
    const inA = await catalog.db
      .select()
      .from(instances)
      .where(and(eq(instances.networkId, small), eq(instances.datacenter, "eu-west-a")));
    for (let i = inA.length; i < 13; i++) await addInstance(small, "eu-west-a");
    const full = await addInstance(small, "eu-west-a").catch((error: unknown) => error);
    expect(full).toBeInstanceOf(ApiError);
    expect((full as ApiError).code).toBe("subnet_full");
    expect((full as ApiError).message).toContain("10.60.0.0/28");
    await addInstance(small, "eu-west-b");
    const none = await addInstance(small, "eu-west-c").catch((error: unknown) => error);
    expect((none as ApiError).code).toBe("network_full");
    expect((none as ApiError).message).toContain("small (10.60.0.0/27)");
  });

  it("keeps every address across a restart of the control plane, and goes on after the last one given", async () => {
    const before = await catalog.db.select({ id: instances.id, ip: instances.networkIp }).from(instances);
    await catalog.close();
    catalog = openCatalog(location);
    await catalog.migrate();
    const after = await catalog.db.select({ id: instances.id, ip: instances.networkIp }).from(instances);
    const byId = (rows: typeof before) => Object.fromEntries(rows.map((r) => [r.id, r.ip]));
    expect(byId(after)).toEqual(byId(before));
    const next = await addInstance(wide, "eu-west-a");
    expect(next.networkIp).toBe("10.70.0.22");
  });
});
