// A datacenter's host as the public API shows it (GET /v1/datacenters/{name}/hosts): what its
// manager last reported of it in a heartbeat (ReportedHost, ./hosts.ts), read-only.
import { z } from "@hono/zod-openapi";
import { CapacitySchema, NameSchema, TimestampSchema } from "./common.ts";
import { HostArchitectureSchema, HostStateSchema } from "./hosts.ts";

export const HostSchema = z
  .object({
    name: NameSchema.openapi({ example: "host-1" }),
    datacenter: NameSchema.openapi({ example: "eu-west-a" }),
    state: HostStateSchema.openapi({
      description:
        "up while its manager says so and the datacenter itself is up; down otherwise: a host's facts are only as fresh as its manager's last heartbeat.",
    }),
    arch: HostArchitectureSchema,
    capacity: CapacitySchema,
    free: CapacitySchema,
    instance_count: z.number().int().min(0).openapi({ description: "Guests the host runs." }),
    cached_versions: z
      .number()
      .int()
      .min(0)
      .openapi({ description: "Image versions in the host's local cache." }),
    cache_bytes: z.number().int().min(0).openapi({ description: "Bytes the host's image cache holds." }),
    last_seen_at: TimestampSchema.openapi({ description: "When its manager last heard from the host." }),
  })
  .openapi("Host");
export type Host = z.infer<typeof HostSchema>;
