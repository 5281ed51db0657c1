// Data sources: globalvm_regions (every region with its datacenters and their status),
// globalvm_image (one image by name or id, with every replica and why it exists) and globalvm_network (one network by name).

import { type ApiClient, expectData, type Network } from "../../client/api.ts";
import { DiagnosticError, defineDataSource } from "../index.ts";
import type { GlobalvmProviderData } from "../provider-data.ts";
import { imageDataState, REPLICA_WITH_REASON_TYPE } from "./image.ts";
import { networkState } from "./network.ts";

const DATACENTER_TYPE = ["object", { name: "string", region: "string", status: "string" }] as const;

export const regionsDataSource = defineDataSource<GlobalvmProviderData>({
  typeName: "globalvm_regions",
  schema: {
    description: "The regions of the control plane, their datacenters and the datacenters' status.",
    attributes: {
      names: { type: ["list", "string"], computed: true },
      regions: {
        type: ["list", ["object", { name: "string", datacenters: ["list", "string"] }]],
        computed: true,
      },
      datacenters: { type: ["list", DATACENTER_TYPE], computed: true },
      status: { type: ["map", "string"], computed: true, description: "Datacenter name → status." },
    },
  },
  async read(_request, { providerData, signal }) {
    const { api } = providerData;
    const [regions, datacenters] = await Promise.all([
      api.GET("/v1/regions", { params: { query: { page_size: 100 } }, signal }),
      api.GET("/v1/datacenters", { params: { query: { page_size: 100 } }, signal }),
    ]);
    const regionItems = expectData("Listing regions", regions).items;
    const datacenterItems = expectData("Listing datacenters", datacenters).items;
    return {
      names: regionItems.map((r) => r.name),
      regions: regionItems.map((r) => ({ name: r.name, datacenters: [...r.datacenters] })),
      datacenters: datacenterItems.map((d) => ({ name: d.name, region: d.region, status: d.status })),
      status: Object.fromEntries(datacenterItems.map((d) => [d.name, d.status])),
    };
  },
});

export const imageDataSource = defineDataSource<GlobalvmProviderData>({
  typeName: "globalvm_image",
  schema: {
    description: "An image of the project, by name or id.",
    attributes: {
      id: { type: "string", optional: true, computed: true },
      name: { type: "string", optional: true, computed: true },
      format: { type: "string", computed: true },
      origin_region: { type: "string", computed: true },
      replicate_to: { type: ["set", "string"], computed: true },
      labels: { type: ["map", "string"], computed: true },
      digest: { type: "string", computed: true },
      size: { type: "number", computed: true },
      version: { type: "number", computed: true },
      replicas: {
        type: ["list", REPLICA_WITH_REASON_TYPE],
        computed: true,
        description:
          "Every replica of every version, with `reason`: origin, replicate_to, or on_demand (made for a VM group; collected once unused).",
      },
    },
  },
  validateConfig(config, diagnostics) {
    if (config.id === null && config.name === null) {
      diagnostics.error("Missing image selector", "Give `name` or `id`.", ["name"]);
    } else if (typeof config.id === "string" && typeof config.name === "string") {
      diagnostics.error("Conflicting image selectors", "Give `name` or `id`, not both.", ["id"]);
    }
  },
  async read({ config }, { providerData, signal }) {
    const { api } = providerData;
    if (typeof config.id === "string") {
      const result = await api.GET("/v1/images/{id}", { params: { path: { id: config.id } }, signal });
      if (result.response.status === 404) {
        throw new DiagnosticError("No such image", { detail: `No image ${config.id}.`, path: ["id"] });
      }
      return imageDataState(expectData("Reading the image", result));
    }
    const name = String(config.name);
    const page = expectData(
      "Listing images",
      await api.GET("/v1/images", { params: { query: { name, page_size: 1 } }, signal }),
    );
    const image = page.items[0];
    if (!image)
      throw new DiagnosticError("No such image", { detail: `No image named ${name}.`, path: ["name"] });
    return imageDataState(image);
  },
});

/** Every network name of the project, following the pages: what a failed lookup lists. */
async function networkNames(api: ApiClient, signal: AbortSignal): Promise<string[]> {
  const names: string[] = [];
  let pageToken: string | undefined;
  do {
    const page = expectData(
      "Listing networks",
      await api.GET("/v1/networks", {
        params: { query: { page_size: 200, ...(pageToken ? { page_token: pageToken } : {}) } },
        signal,
      }),
    );
    names.push(...page.items.map((n) => n.name));
    pageToken = page.next_page_token ?? undefined;
  } while (pageToken);
  return names.sort();
}

export const networkDataSource = defineDataSource<GlobalvmProviderData>({
  typeName: "globalvm_network",
  schema: {
    description:
      "A network of the project, by name: e.g. the `default` network every project starts with, " +
      "whose `id` a globalvm_firewall_rule's `network` takes.",
    attributes: {
      name: { type: "string", required: true },
      id: { type: "string", computed: true },
      cidr: { type: "string", computed: true },
      subnet_prefix_length: {
        type: "number",
        computed: true,
        description: "The size of each datacenter's subnet of the network.",
      },
      labels: { type: ["map", "string"], computed: true },
    },
  },
  async read({ config }, { providerData, signal }) {
    const { api } = providerData;
    const name = String(config.name);
    const page = expectData(
      "Listing networks",
      await api.GET("/v1/networks", { params: { query: { name, page_size: 1 } }, signal }),
      () => ["name"],
    );
    const network: Network | undefined = page.items[0];
    if (!network) {
      const names = await networkNames(api, signal);
      const known = names.length > 0 ? `the project's networks: ${names.join(", ")}` : "the project has none";
      throw new DiagnosticError("No such network", {
        detail: `No network named ${name}; ${known}.`,
        path: ["name"],
      });
    }
    return networkState(network);
  },
});
