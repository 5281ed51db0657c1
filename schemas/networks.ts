import { z } from "@hono/zod-openapi";
import { idSchema, LabelsSchema, NameSchema, TimestampSchema } from "./common.ts";
import { NETWORK_PREFIX_LENGTHS, networkCidrProblem, parseCidr } from "./ipv4.ts";
import { DEFAULT_NETWORK } from "./plain.ts";

export { DEFAULT_NETWORK };

/** A datacenter's subnet holds at least 8 addresses (network, gateway and broadcast are reserved). */
export const MAX_SUBNET_PREFIX_LENGTH = 29;

export const NetworkCidrSchema = z
  .string()
  .superRefine((text, ctx) => {
    const problem = networkCidrProblem(text);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .openapi({ example: "10.20.0.0/16", description: "An IPv4 block in private address space." });

export const NetworkSchema = z
  .object({
    id: idSchema("network"),
    name: NameSchema,
    cidr: z.string().openapi({ example: "10.20.0.0/16" }),
    subnet_prefix_length: z.number().int().openapi({
      example: 24,
      description: "The size of the subnet each datacenter gets of the network when it first needs one.",
    }),
    labels: z.record(z.string(), z.string()),
    created_at: TimestampSchema,
    updated_at: TimestampSchema,
  })
  .openapi("Network");
export type Network = z.infer<typeof NetworkSchema>;

export const CreateNetworkSchema = z
  .strictObject({
    name: NameSchema,
    cidr: NetworkCidrSchema,
    subnet_prefix_length: z
      .number()
      .int()
      .min(NETWORK_PREFIX_LENGTHS.min)
      .max(MAX_SUBNET_PREFIX_LENGTH)
      .optional()
      .openapi({
        description: "Default: /24, or the network's own prefix length when that is longer.",
      }),
    labels: LabelsSchema.default({}),
  })
  .superRefine((body, ctx) => {
    const cidr = parseCidr(body.cidr);
    if ("error" in cidr || body.subnet_prefix_length === undefined) return;
    if (body.subnet_prefix_length < cidr.prefixLength) {
      ctx.addIssue({
        code: "custom",
        path: ["subnet_prefix_length"],
        message: `a subnet cannot be larger than its network (/${cidr.prefixLength})`,
      });
    }
  })
  .openapi("CreateNetwork");

export const UpdateNetworkSchema = z
  .strictObject({ name: NameSchema.optional(), labels: LabelsSchema.optional() })
  .openapi("UpdateNetwork", {
    description: "The address range of a network is fixed: create another network for another range.",
  });

/** The subnet size a network gets when its creator does not say. */
export function defaultSubnetPrefixLength(cidr: string): number {
  const parsed = parseCidr(cidr);
  return "error" in parsed ? 24 : Math.max(24, parsed.prefixLength);
}
