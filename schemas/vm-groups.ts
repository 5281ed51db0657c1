import { z } from "@hono/zod-openapi";
import { idSchema, LabelsSchema, NameSchema, TimestampSchema } from "./common.ts";
import { EndpointAddressSchema, EXPOSE_PROTOCOLS, ExposeSchema } from "./endpoints.ts";
import { DEFAULT_NETWORK } from "./networks.ts";
import { REFERENCEABLE_ATTRIBUTES } from "./vm-group-references.ts";

export const VM_GROUP_STATES = [
  "pending",
  "provisioning",
  "running",
  "ready",
  "updating",
  "deleting",
  "failed",
] as const;
export const PLACEMENT_STRATEGIES = ["image-locality", "least-loaded", "spread"] as const;
/** How a regional group's instances spread over its region's datacenters. */
export const DISTRIBUTIONS = ["even", "any"] as const;
export type Distribution = (typeof DISTRIBUTIONS)[number];

export const MachineSchema = z
  .strictObject({
    vcpus: z.number().int().min(1).max(64),
    memory_mb: z.number().int().min(64).max(262_144),
  })
  .openapi("Machine");

export const PlacementPolicySchema = z
  .strictObject({
    regions: z.array(NameSchema).min(1).max(32),
    strategy: z.enum(PLACEMENT_STRATEGIES).default("image-locality"),
    conditions: z
      .strictObject({
        min_free_vcpus: z.number().int().min(0).optional(),
        min_free_memory_mb: z.number().int().min(0).optional(),
        max_transfer_bytes: z.number().int().min(0).optional(),
        require_up: z.boolean().default(true),
      })
      .default({ require_up: true }),
  })
  .openapi("PlacementPolicy");
export type PlacementPolicy = z.infer<typeof PlacementPolicySchema>;

export const MetadataReferenceSchema = z
  .strictObject({
    vm_group: idSchema("vmGroup"),
    instance: z.number().int().min(0).default(0),
    // A plain string here so that an unknown attribute is refused with the other reference
    // checks (422 naming the field), not as a malformed body.
    attribute: z
      .string()
      .min(1)
      .max(300)
      .openapi({
        description: `One of ${REFERENCEABLE_ATTRIBUTES.join(", ")} of the instance, or guest-attributes/<namespace>/<key>: a value its guest publishes once it runs.`,
        example: "guest-attributes/app/endpoint",
      }),
  })
  .openapi("MetadataReference");
export type MetadataReference = z.infer<typeof MetadataReferenceSchema>;

const MetadataSchema = z
  .record(
    z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, "metadata keys are letters, digits, '_', '.', '-'"),
    z.string().max(32_768),
  )
  .refine((m) => Object.keys(m).length <= 128, "at most 128 metadata keys");

const SPREAD_HOSTS_DESCRIPTION =
  "Anti-affinity: no two of its instances on one host of their datacenter; an instance no host can take then fails to start with the datacenter scheduler's reasons. A datacenter without host agents runs every guest on its manager and has nothing to spread. A change applies to instances placed afterwards (added by a resize, or replacing one in an update): running instances are not moved. Default false.";

const DISTRIBUTION_DESCRIPTION =
  "A regional group: its instances spread over the datacenters of its `region` that are up and have room. `even`: each new instance goes to the datacenter with the fewest of the group's instances, so their counts differ by at most one (a resize keeps it so); `any`: they fill the datacenter that holds the image (then the least loaded) and overflow to the others. The image is moved to every datacenter that runs one. Null (the default): the whole group in one datacenter. Needs `region`; fixed at creation (another distribution is another group).";

const vmGroupFields = {
  name: NameSchema,
  image: idSchema("image").openapi({
    description: "The image its instances boot (for a group naming a family: the family's image now).",
  }),
  image_family: NameSchema.nullable().openapi({
    description:
      "The image family the group follows instead of one image: it moves to whatever image the family names (GET /v1/image-families/{family}).",
  }),
  image_version: z
    .number()
    .int()
    .min(1)
    .nullable()
    .openapi({ description: "Pinned version; null follows the current one." }),
  network: idSchema("network").openapi({
    description: "The network its instances join (its ID). Fixed: another network is another group.",
  }),
  region: NameSchema.nullable(),
  placement: PlacementPolicySchema.nullable(),
  size: z.number().int().min(0).max(1000),
  machine: MachineSchema,
  metadata: MetadataSchema,
  metadata_from: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/), MetadataReferenceSchema),
  labels: LabelsSchema,
  expose: ExposeSchema.openapi({
    description:
      "TCP ports of its guests reachable from outside the network, each through an endpoint of its datacenter. Fixed at creation.",
  }),
  spread_hosts: z.boolean().openapi({
    description: SPREAD_HOSTS_DESCRIPTION,
  }),
  distribution: z.enum(DISTRIBUTIONS).nullable().openapi({ description: DISTRIBUTION_DESCRIPTION }),
};

/** An exposed port and where its datacenter's manager made it reachable. */
export const VmGroupEndpointSchema = z
  .object({
    port: z.number().int().openapi({ description: "The guests' port.", example: 80 }),
    protocol: z.enum(EXPOSE_PROTOCOLS),
    address: EndpointAddressSchema,
    url: z.string().openapi({ example: "tcp://127.0.0.1:30001" }),
    datacenter: NameSchema.openapi({
      description:
        "The datacenter whose manager offers this address; it spreads connections over the group's ready instances there.",
    }),
  })
  .openapi("VmGroupEndpoint");
export type VmGroupEndpoint = z.infer<typeof VmGroupEndpointSchema>;

export const VmGroupSchema = z
  .object({
    id: idSchema("vmGroup"),
    project_id: idSchema("project"),
    ...vmGroupFields,
    datacenter: NameSchema.nullable().openapi({
      description:
        "Chosen by the orchestrator; null until placed, and for a regional group (see datacenters).",
    }),
    datacenters: z.array(NameSchema).openapi({
      description:
        "The datacenters its instances run in, by name: the one datacenter of a placed group, every datacenter a regional group spans. Empty until placed.",
    }),
    state: z.enum(VM_GROUP_STATES),
    endpoints: z.array(VmGroupEndpointSchema).openapi({
      description:
        "The exposed ports made reachable so far: one address per exposed port in each datacenter that runs instances of the group (a regional group has one in each of its datacenters). Empty while the group has no instances.",
    }),
    created_at: TimestampSchema,
    updated_at: TimestampSchema,
  })
  .openapi("VmGroup");
export type VmGroup = z.infer<typeof VmGroupSchema>;

function exactlyOnePlacement(body: { region?: string | null; placement?: unknown }, ctx: z.RefinementCtx) {
  const hasRegion = body.region !== undefined && body.region !== null;
  const hasPolicy = body.placement !== undefined && body.placement !== null;
  if (hasRegion === hasPolicy) {
    ctx.addIssue({
      code: "custom",
      path: [hasRegion ? "placement" : "region"],
      message: "give exactly one of region and placement",
    });
  }
}

/** A distribution spreads a group over one region's datacenters: it needs that region. */
function distributionNeedsRegion(
  body: { region?: string | null; distribution?: string },
  ctx: z.RefinementCtx,
) {
  if (body.distribution === undefined) return;
  if (body.region === undefined || body.region === null) {
    ctx.addIssue({
      code: "custom",
      path: ["distribution"],
      message:
        "a distribution spreads the group over the datacenters of its region: give region, not placement",
    });
  }
}

/** A group names an image (optionally pinning a version) or a family, never both. */
function exactlyOneImage(
  body: { image?: string; image_family?: string; image_version?: number | null },
  ctx: z.RefinementCtx,
) {
  if ((body.image === undefined) === (body.image_family === undefined)) {
    ctx.addIssue({
      code: "custom",
      path: [body.image === undefined ? "image" : "image_family"],
      message: "give exactly one of image and image_family",
    });
  }
  if (body.image_family !== undefined && body.image_version != null) {
    ctx.addIssue({
      code: "custom",
      path: ["image_version"],
      message:
        "a group following a family runs its image's current version: pin a version with image instead",
    });
  }
}

export const CreateVmGroupSchema = z
  .strictObject({
    name: vmGroupFields.name,
    image: vmGroupFields.image.optional(),
    image_family: NameSchema.optional().openapi({
      description: "Follow an image family instead of naming an image.",
    }),
    image_version: vmGroupFields.image_version.optional(),
    network: z.string().min(1).max(64).default(DEFAULT_NETWORK.name).openapi({
      description:
        "The network its instances join, by ID or by name (default: the project's `default` network). Changing it replaces the group.",
    }),
    region: NameSchema.optional(),
    placement: PlacementPolicySchema.optional(),
    size: z.number().int().min(1).max(1000),
    machine: MachineSchema,
    metadata: MetadataSchema.default({}),
    metadata_from: vmGroupFields.metadata_from.default({}),
    labels: LabelsSchema.default({}),
    expose: vmGroupFields.expose.default([]),
    spread_hosts: z.boolean().default(false).openapi({ description: SPREAD_HOSTS_DESCRIPTION }),
    distribution: z.enum(DISTRIBUTIONS).optional().openapi({ description: DISTRIBUTION_DESCRIPTION }),
  })
  .superRefine(exactlyOnePlacement)
  .superRefine(distributionNeedsRegion)
  .superRefine(exactlyOneImage)
  .openapi("CreateVmGroup");
export type CreateVmGroup = z.infer<typeof CreateVmGroupSchema>;

/**
 * Name, image identity, placement and network replace a group; `expose` may be repeated as it
 * is but not changed (yet); everything else changes in place.
 */
export const UpdateVmGroupSchema = z
  .strictObject({
    image_version: vmGroupFields.image_version.optional(),
    size: z.number().int().min(0).max(1000).optional(),
    machine: MachineSchema.optional(),
    metadata: MetadataSchema.optional(),
    metadata_from: vmGroupFields.metadata_from.optional(),
    labels: LabelsSchema.optional(),
    expose: ExposeSchema.optional().openapi({
      description: "Must be the group's `expose` (in any order): exposed ports cannot change in place yet.",
    }),
    spread_hosts: z.boolean().optional().openapi({ description: SPREAD_HOSTS_DESCRIPTION }),
  })
  .refine((body) => Object.keys(body).length > 0, { message: "give at least one field to change" })
  .openapi("UpdateVmGroup");
export type UpdateVmGroup = z.infer<typeof UpdateVmGroupSchema>;
