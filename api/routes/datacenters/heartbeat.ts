import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq, isNotNull, ne } from "drizzle-orm";
import { NameSchema } from "../../../schemas/common.ts";
import { HeartbeatAnswerSchema, HeartbeatSchema } from "../../../schemas/regions.ts";
import { requireManagerOf } from "../../auth.ts";
import { replaceDatacenterHosts } from "../../catalog/hosts.ts";
import { toDatacenter } from "../../catalog/mappers.ts";
import { datacenters, hosts } from "../../catalog/schema.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, jsonResponse, problemResponses } from "../../openapi.ts";

export const route = createRoute({
  method: "post",
  path: "/v1/datacenters/{name}/heartbeat",
  operationId: "heartbeatDatacenter",
  tags: ["regions"],
  summary: "Report a regional manager's liveness, capacity and store counts, and its datacenter's hosts",
  description:
    "`hosts` replaces the datacenter's hosts as the catalog shows them (GET /v1/datacenters/{name}/hosts); a heartbeat without `hosts` removes them all (its manager runs its guests itself).",
  security: bearerAuth,
  request: { params: z.object({ name: NameSchema }), body: jsonBody(HeartbeatSchema) },
  responses: {
    200: jsonResponse(HeartbeatAnswerSchema, "The datacenter as now recorded, and its guest-network peers."),
    ...problemResponses(400, 401, 403, 404),
  },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const { name } = c.req.valid("param");
    requireManagerOf(c, name);
    const body = c.req.valid("json");
    assertDistinctHostNames(body.hosts ?? []);
    const { db, now } = c.get("services");
    const at = now();
    const row = await db.transaction(async (tx) => {
      const [updated] = await tx
        .update(datacenters)
        .set({
          managerUrl: body.manager_url,
          capacityVcpus: body.capacity.vcpus,
          capacityMemoryMb: body.capacity.memory_mb,
          capacityDiskBytes: body.capacity.disk_bytes,
          freeVcpus: body.free.vcpus,
          freeMemoryMb: body.free.memory_mb,
          freeDiskBytes: body.free.disk_bytes,
          chunkCount: body.chunk_count,
          imageCount: body.image_count,
          underlayAddress: body.underlay_address ?? null,
          lastHeartbeatAt: at,
        })
        .where(eq(datacenters.name, name))
        .returning();
      if (!updated) throw errors.notFound("datacenter", name);
      // After the row's update: its lock orders two heartbeats of one datacenter.
      await replaceDatacenterHosts(tx, name, body.hosts);
      return updated;
    });
    // Every other place that attaches guests: a network's broadcast reaches them all, and one
    // without that network's tunnel drops it. Those are the other datacenters' managers that run
    // guests themselves, and every host agent, this datacenter's included: its manager hands
    // them to each of its hosts, which leaves itself out.
    const [managers, agents] = await Promise.all([
      db
        .select({ address: datacenters.underlayAddress })
        .from(datacenters)
        .where(and(ne(datacenters.name, name), isNotNull(datacenters.underlayAddress))),
      db.select({ address: hosts.underlayAddress }).from(hosts).where(isNotNull(hosts.underlayAddress)),
    ]);
    const peers = [...new Set([...managers, ...agents].map((p) => p.address as string))].sort();
    return c.json({ ...toDatacenter(row, at), underlay_peers: peers }, 200);
  });
}

/** A host's name is its key in its datacenter: a report naming one twice is malformed. */
function assertDistinctHostNames(hosts: readonly { name: string }[]) {
  const seen = new Set<string>();
  const duplicates = hosts.flatMap((host, index) => {
    if (!seen.has(host.name)) {
      seen.add(host.name);
      return [];
    }
    return [{ path: `hosts[${index}].name`, message: `host ${host.name} is named twice` }];
  });
  if (duplicates.length > 0) throw errors.validation(duplicates);
}
