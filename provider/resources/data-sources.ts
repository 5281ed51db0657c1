// Data sources: globalvm_regions (every region with its datacenters and their status),
// globalvm_hosts (one datacenter's hosts), globalvm_image (one image by name, id or family,
// with every replica and why it exists), globalvm_image_versions (an image's versions and their
// lifecycle) and globalvm_network (one network by name).

import { type ApiClient, expectData, type Host, type Network } from "../../client/api.ts";
import { CtyNumber, DiagnosticError, defineDataSource } from "../index.ts";
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

const HOST_TYPE = [
  "object",
  {
    name: "string",
    state: "string",
    arch: "string",
    vcpus: "number",
    memory_mb: "number",
    disk_bytes: "number",
    free_vcpus: "number",
    free_memory_mb: "number",
    instance_count: "number",
    cached_versions: "number",
  },
] as const;

export const hostsDataSource = defineDataSource<GlobalvmProviderData>({
  typeName: "globalvm_hosts",
  schema: {
    description:
      "The hosts of one datacenter, as its manager last reported them. Empty for a datacenter whose manager runs its guests itself (no host agents).",
    attributes: {
      datacenter: { type: "string", required: true },
      hosts: {
        type: ["list", HOST_TYPE],
        computed: true,
        description:
          "Each host by name: `state` (up, or down, also whenever the datacenter is not up), `arch`, its capacity (`vcpus`, `memory_mb`, `disk_bytes`), what is free of it (`free_vcpus`, `free_memory_mb`), the guests it runs (`instance_count`) and the image versions its cache holds (`cached_versions`).",
      },
    },
  },
  async read({ config }, { providerData, signal }) {
    const name = String(config.datacenter);
    const hosts: Host[] = [];
    let pageToken: string | undefined;
    do {
      const result = await providerData.api.GET("/v1/datacenters/{name}/hosts", {
        params: {
          path: { name },
          query: { page_size: 200, ...(pageToken ? { page_token: pageToken } : {}) },
        },
        signal,
      });
      if (result.response.status === 404) {
        throw new DiagnosticError("No such datacenter", {
          detail: `No datacenter ${name}; data "globalvm_regions" lists them.`,
          path: ["datacenter"],
        });
      }
      const page = expectData("Listing the datacenter's hosts", result, () => ["datacenter"]);
      hosts.push(...page.items);
      pageToken = page.next_page_token ?? undefined;
    } while (pageToken);
    return {
      hosts: hosts.map((host) => ({
        name: host.name,
        state: host.state,
        arch: host.arch,
        vcpus: new CtyNumber(host.capacity.vcpus),
        memory_mb: new CtyNumber(host.capacity.memory_mb),
        disk_bytes: new CtyNumber(host.capacity.disk_bytes),
        free_vcpus: new CtyNumber(host.free.vcpus),
        free_memory_mb: new CtyNumber(host.free.memory_mb),
        instance_count: new CtyNumber(host.instance_count),
        cached_versions: new CtyNumber(host.cached_versions),
      })),
    };
  },
});

export const imageDataSource = defineDataSource<GlobalvmProviderData>({
  typeName: "globalvm_image",
  schema: {
    description:
      "An image of the project (or shared with it), by exactly one of `id`, `name` or `family` (the family's newest active image).",
    attributes: {
      id: { type: "string", optional: true, computed: true },
      name: { type: "string", optional: true, computed: true },
      family: { type: "string", optional: true, computed: true },
      members: {
        type: ["set", "string"],
        computed: true,
        description: "Projects the image is shared with (empty when it is another project's image).",
      },
      pinned_version: {
        type: "number",
        computed: true,
        description:
          "The version set as current by hand (a rollback); null when `version` is the newest active one.",
      },
      format: { type: "string", computed: true },
      origin_region: { type: "string", computed: true },
      replicate_to: { type: ["set", "string"], computed: true },
      labels: { type: ["map", "string"], computed: true },
      digest: { type: "string", computed: true },
      size: { type: "number", computed: true },
      version: { type: "number", computed: true, description: "The current version." },
      replicas: {
        type: ["list", REPLICA_WITH_REASON_TYPE],
        computed: true,
        description:
          "Every replica of every version, with `reason`: origin, replicate_to, or on_demand (made for a VM group; collected once unused).",
      },
    },
  },
  validateConfig(config, diagnostics) {
    const given = (["id", "name", "family"] as const).filter((key) => config[key] !== null);
    if (given.length === 0) {
      diagnostics.error("Missing image selector", "Give one of `id`, `name` or `family`.", ["name"]);
    } else if (given.length > 1) {
      diagnostics.error(
        "Conflicting image selectors",
        `Give one of \`id\`, \`name\` or \`family\`, not ${given.map((k) => `\`${k}\``).join(" and ")}.`,
        [given[1] as string],
      );
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
    if (typeof config.family === "string") {
      const family = config.family;
      const result = await api.GET("/v1/image-families/{family}", { params: { path: { family } }, signal });
      if (result.response.status === 404) {
        throw new DiagnosticError("No such image family", {
          detail: `No image of the project names family ${family}, or none of them has a version that boots.`,
          path: ["family"],
        });
      }
      return imageDataState(expectData("Resolving the image family", result, () => ["family"]));
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

const VERSION_TYPE = [
  "object",
  {
    version: "number",
    state: "string",
    digest: "string",
    size: "number",
    created_at: "string",
    current: "bool",
    deprecate_at: "string",
    obsolete_at: "string",
  },
] as const;

export const imageVersionsDataSource = defineDataSource<GlobalvmProviderData>({
  typeName: "globalvm_image_versions",
  schema: {
    description: "The versions of an image, newest first, with their lifecycle.",
    attributes: {
      image_id: { type: "string", required: true },
      current_version: {
        type: "number",
        computed: true,
        description: "The version VM groups following the image run.",
      },
      versions: {
        type: ["list", VERSION_TYPE],
        computed: true,
        description:
          "Each version: `state` (active, deprecated, obsolete or deleted), `digest`, `size` in bytes, `created_at`, whether it is `current`, and when it is scheduled to be deprecated (`deprecate_at`) or made obsolete (`obsolete_at`).",
      },
    },
  },
  async read({ config }, { providerData, signal }) {
    const id = String(config.image_id);
    const result = await providerData.api.GET("/v1/images/{id}/versions", {
      params: { path: { id } },
      signal,
    });
    if (result.response.status === 404) {
      throw new DiagnosticError("No such image", { detail: `No image ${id}.`, path: ["image_id"] });
    }
    const versions = expectData("Listing the image's versions", result, () => ["image_id"]).items;
    const current = versions.find((v) => v.current);
    return {
      current_version: current ? new CtyNumber(current.version) : null,
      versions: versions.map((v) => ({
        version: new CtyNumber(v.version),
        state: v.state,
        digest: v.digest,
        size: new CtyNumber(v.size),
        created_at: v.created_at,
        current: v.current,
        deprecate_at: v.deprecate_at,
        obsolete_at: v.obsolete_at,
      })),
    };
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
