import { z } from "@hono/zod-openapi";
import { CapacitySchema, NameSchema, TimestampSchema } from "./common.ts";
import { ReportedHostSchema } from "./hosts.ts";

export const DATACENTER_STATUSES = ["up", "degraded", "down", "unknown"] as const;
export const DatacenterStatusSchema = z.enum(DATACENTER_STATUSES);
export type DatacenterStatus = z.infer<typeof DatacenterStatusSchema>;

export const DRIVER_KINDS = ["qemu"] as const;

// Capacity lives with the other shapes every schema module shares (hosts have one too).
export { type Capacity, CapacitySchema } from "./common.ts";

export const RegionSchema = z
  .object({
    name: NameSchema.openapi({ example: "eu-west" }),
    display_name: z.string(),
    datacenters: z.array(NameSchema),
    created_at: TimestampSchema,
  })
  .openapi("Region");
export type Region = z.infer<typeof RegionSchema>;

export const CreateRegionSchema = z
  .strictObject({
    name: NameSchema.openapi({ example: "eu-west" }),
    display_name: z.string().min(1).max(100).optional(),
  })
  .openapi("CreateRegion");

export const DatacenterSchema = z
  .object({
    name: NameSchema.openapi({ example: "eu-west-a" }),
    region: NameSchema,
    manager_url: z.string().url().nullable(),
    driver: z.enum(DRIVER_KINDS),
    capacity: CapacitySchema,
    free: CapacitySchema.nullable(),
    chunk_count: z.number().int().nullable(),
    image_count: z.number().int().nullable(),
    status: DatacenterStatusSchema.openapi({
      description:
        "Derived from the age of the last heartbeat: up (< 30 s), degraded (< 90 s), down, or unknown (never).",
    }),
    last_heartbeat_at: TimestampSchema.nullable(),
    created_at: TimestampSchema,
  })
  .openapi("Datacenter");
export type Datacenter = z.infer<typeof DatacenterSchema>;

export const RegisterDatacenterSchema = z
  .strictObject({
    name: NameSchema.openapi({ example: "eu-west-a" }),
    region: NameSchema.openapi({ example: "eu-west" }),
    manager_url: z.string().url().optional(),
    driver: z.enum(DRIVER_KINDS).default("qemu"),
    capacity: CapacitySchema.strict(),
  })
  .openapi("RegisterDatacenter");

export const HeartbeatSchema = z
  .strictObject({
    manager_url: z.string().url(),
    capacity: CapacitySchema.strict(),
    free: CapacitySchema.strict(),
    chunk_count: z.number().int().min(0),
    image_count: z.number().int().min(0),
    underlay_address: z
      .string()
      .regex(/^\d{1,3}(\.\d{1,3}){3}$/, "an IPv4 address")
      .optional()
      .openapi({
        description:
          "Where this datacenter's guest-network tunnels start, when its manager attaches guests to networks.",
      }),
    /** The datacenter's host agents, when it has any (absent: the manager runs guests itself). */
    hosts: z.array(ReportedHostSchema).max(1024).optional(),
  })
  .openapi("Heartbeat");
export type Heartbeat = z.infer<typeof HeartbeatSchema>;

export const HeartbeatAnswerSchema = DatacenterSchema.extend({
  underlay_peers: z.array(z.string()).openapi({
    description:
      "Where this datacenter's guest-network tunnels reach: the other datacenters' managers that attach guests, and every host agent that does (this datacenter's included).",
  }),
}).openapi("HeartbeatAnswer");
export type HeartbeatAnswer = z.infer<typeof HeartbeatAnswerSchema>;
