// The globalvm provider: provider-level configuration and the registry of resources and
// data sources (written in provider/resources/ against the control-plane API).

import { type ApiClient, checkReachable, createApiClient } from "./client/client.ts";
import { defineProvider } from "./framework/definitions.ts";
import { imageDataSource, regionsDataSource } from "./resources/data-sources.ts";
import { imageResource } from "./resources/image.ts";
import { networkResource } from "./resources/network.ts";
import { vmGroupResource } from "./resources/vm-group.ts";

export interface GlobalvmProviderData {
  endpoint: string;
  token: string;
  api: ApiClient;
  /** Region names, fetched once per provider process (plan-time checks). */
  regionNames(): Promise<Set<string>>;
}

export function createProviderData(
  endpoint: string,
  token: string,
  fetchImpl?: typeof fetch,
): GlobalvmProviderData {
  const api = createApiClient({ endpoint, token, ...(fetchImpl ? { fetch: fetchImpl } : {}) });
  let regions: Promise<Set<string>> | undefined;
  return {
    endpoint,
    token,
    api,
    regionNames() {
      regions ??= api.GET("/v1/regions", { params: { query: { page_size: 100 } } }).then((result) => {
        if (!result.data) {
          regions = undefined;
          return new Set<string>();
        }
        return new Set(result.data.items.map((region) => region.name));
      });
      return regions;
    },
  };
}

export const globalvmProvider = defineProvider<GlobalvmProviderData>({
  typeName: "globalvm",
  schema: {
    description: "globalvm: VM images, VM groups and networks in any region.",
    attributes: {
      endpoint: {
        type: "string",
        optional: true,
        description: "Control-plane URL. Defaults to the GLOBALVM_ENDPOINT environment variable.",
      },
      token: {
        type: "string",
        optional: true,
        sensitive: true,
        description: "API token. Defaults to the GLOBALVM_TOKEN environment variable.",
      },
    },
  },
  async configure({ config, diagnostics }) {
    const endpoint =
      typeof config.endpoint === "string" ? config.endpoint : (process.env.GLOBALVM_ENDPOINT ?? "");
    const token = typeof config.token === "string" ? config.token : (process.env.GLOBALVM_TOKEN ?? "");
    if (!endpoint) {
      diagnostics.error(
        "No globalvm endpoint",
        'Set `endpoint` in the provider "globalvm" block or the GLOBALVM_ENDPOINT environment variable.',
        ["endpoint"],
      );
    } else if (!/^https?:\/\/[^/]+/.test(endpoint)) {
      diagnostics.error(
        "Invalid globalvm endpoint",
        `${JSON.stringify(endpoint)} is not an http(s) URL such as https://globalvm.example.com.`,
        ["endpoint"],
      );
    }
    if (!token) {
      diagnostics.error(
        "No globalvm token",
        'Set `token` in the provider "globalvm" block or the GLOBALVM_TOKEN environment variable.',
        ["token"],
      );
    }
    if (!diagnostics.hasErrors) await checkReachable(endpoint);
    return createProviderData(endpoint, token);
  },
  resources: [imageResource, vmGroupResource, networkResource],
  dataSources: [regionsDataSource, imageDataSource],
});
