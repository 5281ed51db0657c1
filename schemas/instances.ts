import { z } from "@hono/zod-openapi";
import { idSchema, NameSchema, TimestampSchema } from "./common.ts";

export const INSTANCE_STATES = [
  "pending",
  "transferring-image",
  "starting",
  "running",
  "ready",
  "stopped",
  "failed",
  "unknown",
] as const;
export const InstanceStateSchema = z.enum(INSTANCE_STATES);

export const InstanceSchema = z
  .object({
    id: idSchema("instance"),
    vm_group_id: idSchema("vmGroup"),
    name: z.string(),
    ordinal: z.number().int().min(0),
    datacenter: NameSchema,
    image_version: z.number().int().min(1).nullable(),
    local_id: z.string().nullable(),
    state: InstanceStateSchema,
    state_reason: z.string().nullable(),
    address: z.string().nullable().openapi({
      description:
        "Where the guest is reachable, as its datacenter's manager reports it: its network_ip once the datacenter has attached it to its network; null before.",
    }),
    network_ip: z.string().nullable().openapi({
      example: "10.128.0.2",
      description:
        "The address the instance holds on its VM group's network, in its datacenter's subnet. Kept for the instance's life; a replacement gets its own.",
    }),
    host: NameSchema.nullable().openapi({
      description:
        "The host of its datacenter running the guest, as the datacenter's manager reports it; null while it reports none, or when the manager runs its guests itself (a datacenter without host agents).",
    }),
    guest_attributes: z.record(z.string(), z.string()),
    boot_log_tail: z.string().nullable(),
    created_at: TimestampSchema,
    updated_at: TimestampSchema,
  })
  .openapi("Instance");
export type Instance = z.infer<typeof InstanceSchema>;
