// The globalvm provider: provider-level configuration and the registry of resources and
// data sources (written in provider/resources/ against the control-plane API).

import { checkReachable } from "../client/api.ts";
import { defineProvider } from "./framework/definitions.ts";
import { createProviderData, type GlobalvmProviderData } from "./provider-data.ts";
import {
  hostsDataSource,
  imageDataSource,
  imageVersionsDataSource,
  networkDataSource,
  regionsDataSource,
} from "./resources/data-sources.ts";
import { firewallRuleResource } from "./resources/firewall-rule.ts";
import { imageResource } from "./resources/image.ts";
import { networkResource } from "./resources/network.ts";
import { vmGroupResource } from "./resources/vm-group.ts";

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
  async configure({ config, diagnostics, launch }) {
    const endpoint =
      typeof config.endpoint === "string" ? config.endpoint : (launch.env.GLOBALVM_ENDPOINT ?? "");
    const token = typeof config.token === "string" ? config.token : (launch.env.GLOBALVM_TOKEN ?? "");
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
    return createProviderData(endpoint, token, { workingDirectory: launch.cwd });
  },
  resources: [imageResource, vmGroupResource, networkResource, firewallRuleResource],
  dataSources: [
    regionsDataSource,
    hostsDataSource,
    imageDataSource,
    imageVersionsDataSource,
    networkDataSource,
  ],
});
