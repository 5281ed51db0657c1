// Endpoints: the way into a VM group from outside its network. A group `expose`s TCP ports; the
// manager of its datacenter gives each one an address and port on its host that spreads new
// connections over the group's ready instances (kernel NAT; regional-manager/network/). The
// shapes below are shared by the public API (a group's `expose` and `endpoints`), the instance
// spec the control plane sends a manager, and the report the manager sends back.
import { z } from "@hono/zod-openapi";
import { EXPOSE_PROTOCOLS, MAX_EXPOSED_PORTS } from "./plain.ts";

export { EXPOSE_PROTOCOLS, MAX_EXPOSED_PORTS };

export const ExposedPortSchema = z
  .strictObject({
    port: z.number().int().min(1).max(65_535).openapi({ description: "The guest's port.", example: 80 }),
    protocol: z.enum(EXPOSE_PROTOCOLS).default("tcp"),
  })
  .openapi("ExposedPort");
export type ExposedPort = z.infer<typeof ExposedPortSchema>;

/** A group's exposed ports: at most MAX_EXPOSED_PORTS, each port once. */
export const ExposeSchema = z
  .array(ExposedPortSchema)
  .max(MAX_EXPOSED_PORTS)
  .superRefine((ports, ctx) => {
    const seen = new Set<string>();
    ports.forEach((entry, index) => {
      const key = `${entry.protocol}/${entry.port}`;
      if (seen.has(key)) {
        ctx.addIssue({
          code: "custom",
          path: [index, "port"],
          message: `port ${entry.port} is exposed twice`,
        });
      }
      seen.add(key);
    });
  });

/** Where an exposed port is reached: `host:port` on the datacenter's manager host. */
export const EndpointAddressSchema = z
  .string()
  .regex(/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/, "an IPv4 address and port")
  .openapi({ example: "127.0.0.1:30001" });

/** What a manager reports for each exposed port of an instance's group. */
export const ReportedEndpointSchema = z
  .strictObject({
    port: z.number().int().min(1).max(65_535),
    protocol: z.enum(EXPOSE_PROTOCOLS),
    address: EndpointAddressSchema,
  })
  .openapi("ReportedEndpoint");
export type ReportedEndpoint = z.infer<typeof ReportedEndpointSchema>;

/** `tcp://host:port`: the form a group's `endpoints[].url` takes. */
export function endpointUrl(endpoint: { protocol: string; address: string }): string {
  return `${endpoint.protocol}://${endpoint.address}`;
}
