// The spec a manager is sent for an instance, as a fake manager receives it: the group it belongs
// to, its internal name (the guest's hostname), and for a group that exposes ports those ports
// and its datacenter's gateway on the network.
import { createServer, type Server } from "node:http";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allocateNetworkIp } from "../../api/catalog/addresses.ts";
import { instances, vmGroups } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { instanceSpecOf } from "../../api/orchestrator/instance-specs.ts";
import { startInstanceOnManager } from "../../api/orchestrator/manager-client.ts";
import { ManagerInstanceSpecSchema } from "../../schemas/manager-instances.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS } from "../support/catalogs.ts";

/** A manager that records the body of every instance it is asked to start, checked against the contract. */
async function fakeManager() {
  const specs: unknown[] = [];
  const server: Server = createServer(async (request, response) => {
    let text = "";
    for await (const chunk of request) text += chunk;
    const parsed = ManagerInstanceSpecSchema.safeParse(JSON.parse(text));
    specs.push(parsed.success ? parsed.data : { refused: parsed.error.issues });
    response.writeHead(parsed.success ? 200 : 400, { "content-type": "application/json" });
    response.end(JSON.stringify({}));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    specs,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe.each(CATALOG_KINDS)("instance specs sent to a manager (%s)", (kind) => {
  let api: TestApi;
  let manager: Awaited<ReturnType<typeof fakeManager>>;
  let token: string;
  let imageId: string;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.createRegion("us-east");
    token = (await api.createProject("acme")).token;
    imageId = (
      await api.expectStatus(201, "POST", "/v1/images", {
        token,
        body: { name: "web", origin_region: "us-east" },
      })
    ).id;
    manager = await fakeManager();
  });
  afterAll(async () => {
    await manager?.close();
    await api?.close();
  });

  /** Declares a group, records its instance 0 in us-east-a as the orchestrator does, and starts it. */
  async function startFirstInstance(name: string, expose: unknown[]) {
    const created = await api.expectStatus(202, "POST", "/v1/vm-groups", {
      token,
      body: {
        name,
        image: imageId,
        region: "us-east",
        size: 1,
        machine: { vcpus: 1, memory_mb: 128 },
        expose,
      },
    });
    const { db } = api.services;
    const [group] = await db.select().from(vmGroups).where(eq(vmGroups.id, created.target.id));
    if (!group) throw new Error("the group was not recorded");
    const id = newId("instance");
    await db.transaction(async (tx) =>
      tx.insert(instances).values({
        id,
        vmGroupId: group.id,
        ordinal: 0,
        datacenter: "us-east-a",
        networkId: group.networkId,
        networkIp: await allocateNetworkIp(tx, group.networkId, "us-east-a"),
      }),
    );
    const [row] = await db.select().from(instances).where(eq(instances.id, id));
    if (!row) throw new Error("the instance was not recorded");
    const target = { datacenter: "us-east-a", managerUrl: manager.url, signer: api.services.instanceTokens };
    await startInstanceOnManager(target, await instanceSpecOf(api.services, group, row, 1, {}));
    return { group, spec: manager.specs.at(-1) };
  }

  it("a group that exposes ports: its ID, the ports, and the gateway of its datacenter's subnet", async () => {
    const { group, spec } = await startFirstInstance("web", [{ port: 80 }, { port: 443 }]);
    // The default network's first /20 is us-east-a's: 10.128.0.1 is its gateway, .2 its first instance.
    expect(spec).toMatchObject({
      name: "web-0",
      vm_group: "web",
      vm_group_id: group.id,
      hostname: "web-0.web.us-east.acme.globalvm.internal",
      expose: [
        { port: 80, protocol: "tcp" },
        { port: 443, protocol: "tcp" },
      ],
      network: { id: group.networkId, address: "10.128.0.2", prefix_length: 9, gateway: "10.128.0.1" },
    });
  });

  it("a group that exposes none: its ID, and neither ports nor a gateway", async () => {
    const { group, spec } = await startFirstInstance("batch", []);
    expect(spec).toMatchObject({
      vm_group_id: group.id,
      hostname: "batch-0.batch.us-east.acme.globalvm.internal",
      network: { address: "10.128.0.3" },
    });
    expect(spec).not.toHaveProperty("expose");
    expect(spec).not.toHaveProperty("network.gateway");
  });
});
