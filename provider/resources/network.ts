// globalvm_network: a project's private IPv4 network, spanning every region. Its range and
// subnet size are fixed (a change replaces it); its name and labels change in place.

import { expectData, type Network } from "../../client/api.ts";
import { networkCidrProblem } from "../../schemas/ipv4.ts";
import {
  type CallContext,
  CtyNumber,
  defineResource,
  type ObjectValue,
  requiresReplace,
  useStateForUnknown,
} from "../index.ts";
import type { GlobalvmProviderData } from "../provider-data.ts";
import { numberOf, stringMap } from "./values.ts";

/** A network as Terraform state holds it: the resource and the data source share it. */
export function networkState(network: Network): ObjectValue {
  return {
    id: network.id,
    name: network.name,
    cidr: network.cidr,
    subnet_prefix_length: new CtyNumber(network.subnet_prefix_length),
    labels: { ...network.labels },
  };
}

async function getNetwork(context: CallContext<GlobalvmProviderData>, id: string): Promise<Network | null> {
  const result = await context.providerData.api.GET("/v1/networks/{id}", {
    params: { path: { id } },
    signal: context.signal,
  });
  if (result.response.status === 404) return null;
  return expectData("Reading the network", result);
}

export const networkResource = defineResource<GlobalvmProviderData>({
  typeName: "globalvm_network",
  schema: {
    description: "A private IPv4 network of the project, spanning every region.",
    attributes: {
      id: { type: "string", computed: true, planModifiers: [useStateForUnknown()] },
      name: { type: "string", required: true },
      cidr: {
        type: "string",
        required: true,
        description:
          "The network's range, in private address space (e.g. 10.20.0.0/16). Changing it replaces the network.",
        planModifiers: [requiresReplace()],
      },
      subnet_prefix_length: {
        type: "number",
        optional: true,
        computed: true,
        description: "The size of each datacenter's subnet (default /24, or the network's own when smaller).",
        planModifiers: [requiresReplace(), useStateForUnknown()],
      },
      labels: { type: ["map", "string"], default: {} },
    },
  },
  validateConfig(config, diagnostics) {
    if (typeof config.cidr === "string") {
      const problem = networkCidrProblem(config.cidr);
      if (problem) diagnostics.error("Invalid cidr", `${config.cidr} ${problem}.`, ["cidr"]);
    }
  },
  async create({ plan }, context) {
    const prefix = numberOf(plan.subnet_prefix_length);
    const created = expectData(
      "Creating the network",
      await context.providerData.api.POST("/v1/networks", {
        body: {
          name: String(plan.name),
          cidr: String(plan.cidr),
          labels: stringMap(plan.labels),
          ...(prefix !== undefined ? { subnet_prefix_length: prefix } : {}),
        },
        signal: context.signal,
      }),
      (path) => path.slice(0, 1),
    );
    return networkState(created);
  },
  async read({ state }, context) {
    const network = await getNetwork(context, String(state.id));
    return network ? networkState(network) : null;
  },
  async update({ plan, prior }, context) {
    const updated = expectData(
      "Updating the network",
      await context.providerData.api.PATCH("/v1/networks/{id}", {
        params: { path: { id: String(prior.id) } },
        body: { name: String(plan.name), labels: stringMap(plan.labels) },
        signal: context.signal,
      }),
      (path) => path.slice(0, 1),
    );
    return networkState(updated);
  },
  async delete({ prior }, context) {
    const result = await context.providerData.api.DELETE("/v1/networks/{id}", {
      params: { path: { id: String(prior.id) } },
      signal: context.signal,
    });
    // 204 carries no body; anything else but a 404 (already gone) is a problem to show.
    if (result.response.ok || result.response.status === 404) return;
    expectData("Deleting the network", result);
  },
  importState: ({ id }) => ({ id }),
});
