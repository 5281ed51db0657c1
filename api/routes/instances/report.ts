import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { idSchema, NameSchema } from "../../../schemas/common.ts";
import { InstanceReportSchema } from "../../../schemas/manager-instances.ts";
import { requireManagerOf } from "../../auth.ts";
import { recordRepair } from "../../catalog/operations.ts";
import { instances, vmGroups } from "../../catalog/schema.ts";
import { recordEndpoints } from "../../catalog/vm-groups.ts";
import type { AppEnv } from "../../env.ts";
import { errors } from "../../errors.ts";
import { bearerAuth, jsonBody, problemResponses } from "../../openapi.ts";
import { changesReferenceableValues } from "../../orchestrator/dependencies.ts";
import { pushMetadataToDependents } from "../../orchestrator/vm-group-metadata.ts";

export const route = createRoute({
  method: "put",
  path: "/v1/datacenters/{name}/instances/{instance_id}",
  operationId: "reportInstance",
  tags: ["managers"],
  summary:
    "A regional manager reports one of its instances: state (with the reason), address, host, guest attributes, boot log tail, its group's endpoints, and a repair it made by itself",
  description:
    "Only the manager of the datacenter the instance is placed in may report it; an instance of another datacenter is a 404.",
  security: bearerAuth,
  request: {
    params: z.object({ name: NameSchema, instance_id: idSchema("instance") }),
    body: jsonBody(InstanceReportSchema),
  },
  responses: { 204: { description: "Recorded." }, ...problemResponses(400, 401, 403, 404) },
});

export function register(app: OpenAPIHono<AppEnv>) {
  app.openapi(route, async (c) => {
    const { name, instance_id } = c.req.valid("param");
    requireManagerOf(c, name);
    const report = c.req.valid("json");
    const services = c.get("services");
    const { db, now } = services;
    const [before] = await db
      .select({ address: instances.address, guestAttributes: instances.guestAttributes })
      .from(instances)
      .where(and(eq(instances.id, instance_id), eq(instances.datacenter, name)));
    const updated = await db
      .update(instances)
      .set({
        state: report.state,
        stateReason: report.state_reason ?? null,
        ...(report.address !== undefined ? { address: report.address } : {}),
        ...(report.local_id !== undefined ? { localId: report.local_id } : {}),
        ...(report.image_version !== undefined ? { imageVersion: report.image_version } : {}),
        ...(report.guest_attributes !== undefined ? { guestAttributes: report.guest_attributes } : {}),
        ...(report.boot_log_tail !== undefined ? { bootLogTail: report.boot_log_tail } : {}),
        // A manager that says nothing of hosts leaves the one recorded; null says it runs the guest itself.
        ...(report.host !== undefined ? { host: report.host } : {}),
        updatedAt: now(),
      })
      .where(and(eq(instances.id, instance_id), eq(instances.datacenter, name)))
      .returning({ id: instances.id, vmGroupId: instances.vmGroupId, ordinal: instances.ordinal });
    const [row] = updated;
    if (!before || !row) throw errors.notFound(`instance of datacenter ${name}`, instance_id);
    if (report.repair) {
      const [group] = await db
        .select({ projectId: vmGroups.projectId, name: vmGroups.name })
        .from(vmGroups)
        .where(eq(vmGroups.id, row.vmGroupId));
      if (group)
        await recordRepair(db, {
          projectId: group.projectId,
          groupId: row.vmGroupId,
          instanceId: instance_id,
          name: `${group.name}-${row.ordinal}`,
          datacenter: name,
          host: report.host ?? null,
          reason: report.repair.reason,
          at: report.repair.at,
        });
    }
    // A manager that says nothing of endpoints leaves the group's as they are.
    if (report.endpoints !== undefined) await recordEndpoints(db, row.vmGroupId, name, report.endpoints);
    // Groups whose metadata takes a value from this instance get it now, not at their next
    // update; the push runs on its own (retried with backoff), the manager's report is answered at once.
    if (changesReferenceableValues(before, report)) void pushMetadataToDependents(services, row.vmGroupId);
    return c.body(null, 204);
  });
}
