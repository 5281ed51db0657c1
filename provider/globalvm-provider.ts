// The globalvm provider: provider-level configuration and the registry of resources and
// data sources (written in provider/resources/ against the control-plane API).

import { defineProvider } from "./framework/definitions.ts";

export interface GlobalvmProviderData {
  endpoint: string;
  token: string;
}

export const globalvmProvider = defineProvider<GlobalvmProviderData>({
  typeName: "globalvm",
  schema: {
    description: "globalvm: VM images and VM groups in any region.",
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
  configure({ config, diagnostics }) {
    const endpoint =
      typeof config.endpoint === "string" ? config.endpoint : (process.env.GLOBALVM_ENDPOINT ?? "");
    const token = typeof config.token === "string" ? config.token : (process.env.GLOBALVM_TOKEN ?? "");
    if (!endpoint) {
      diagnostics.error(
        "No globalvm endpoint",
        'Set `endpoint` in the provider "globalvm" block or the GLOBALVM_ENDPOINT environment variable.',
        ["endpoint"],
      );
    }
    return { endpoint, token };
  },
  resources: [],
  dataSources: [],
});
