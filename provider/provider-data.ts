// What the provider's configure() hands every resource and data source: the configured
// control-plane client. Its own module so that provider/resources/ need not import the
// provider that lists them.
import { type ApiClient, createApiClient } from "../client/api.ts";
import { VmGroupReads } from "./resources/vm-group-reads.ts";

export interface GlobalvmProviderData {
  endpoint: string;
  token: string;
  api: ApiClient;
  /** Region names, fetched once per provider process (plan-time checks). */
  regionNames(): Promise<Set<string>>;
  /** Refreshes of VM groups, batched (resources/vm-group-reads.ts). */
  vmGroupReads: VmGroupReads;
}

export function createProviderData(
  endpoint: string,
  token: string,
  fetchImpl?: typeof fetch,
): GlobalvmProviderData {
  const api = createApiClient({ endpoint, token, ...(fetchImpl ? { fetch: fetchImpl } : {}) });
  const vmGroupReads = new VmGroupReads(api);
  // What this process read before it changed anything may no longer be so.
  api.use({
    onRequest({ request }) {
      if (request.method !== "GET") vmGroupReads.forget();
    },
  });
  let regions: Promise<Set<string>> | undefined;
  return {
    endpoint,
    token,
    api,
    vmGroupReads,
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
