// What the provider's configure() hands every resource and data source: the configured
// control-plane client. Its own module so that provider/resources/ need not import the
// provider that lists them.
import { resolve } from "node:path";
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
  /** A file path from the configuration, relative to the directory Terraform runs in. */
  resolvePath(path: string): string;
}

export interface ProviderDataOptions {
  fetch?: typeof fetch;
  /** Where Terraform runs (the launch's, not this process's: see LaunchEnvironment). */
  workingDirectory?: string;
}

export function createProviderData(
  endpoint: string,
  token: string,
  options: ProviderDataOptions = {},
): GlobalvmProviderData {
  const api = createApiClient({ endpoint, token, ...(options.fetch ? { fetch: options.fetch } : {}) });
  const workingDirectory = options.workingDirectory ?? process.cwd();
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
    resolvePath: (path) => resolve(workingDirectory, path),
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
