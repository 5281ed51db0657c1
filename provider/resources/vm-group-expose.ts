// A globalvm_vm_group's exposed ports (`expose` blocks) and the endpoints its datacenter gives
// them (`endpoints`, computed): their schema, plan-time checks and conversions to and from the API.

import type { Schemas } from "../../client/api.ts";
import { EXPOSE_PROTOCOLS, MAX_EXPOSED_PORTS } from "../../schemas/plain.ts";
import {
  type Attribute,
  CtyNumber,
  type CtyValue,
  type Diagnostics,
  isUnknown,
  type NestedBlock,
  type ObjectValue,
  requiresReplaceIf,
} from "../index.ts";
import { numberOf } from "./values.ts";

type ExposedPort = Schemas["ExposedPort"];

const ENDPOINT_TYPE = [
  "object",
  { port: "number", protocol: "string", address: "string", url: "string", datacenter: "string" },
] as const;

const isEmpty = (value: CtyValue) => value === null || (Array.isArray(value) && value.length === 0);

export const exposeBlock: NestedBlock = {
  nesting: "list",
  maxItems: MAX_EXPOSED_PORTS,
  description:
    "A TCP port of the guests reachable from outside the network through an endpoint of the group's datacenter. Changing them replaces the group.",
  // A state written before `expose` existed holds null where the configuration has no block.
  planModifiers: [
    requiresReplaceIf(
      ({ plan, state }) => !(isEmpty(plan) && isEmpty(state)),
      "Changing the exposed ports replaces the group.",
    ),
  ],
  attributes: {
    port: { type: "number", required: true, description: "The guests' port, 1 to 65535." },
    protocol: { type: "string", default: "tcp", description: "tcp (the only one yet)." },
  },
};

export const endpointsAttribute: Attribute = {
  type: ["list", ENDPOINT_TYPE],
  computed: true,
  description:
    "Where each exposed port is reachable (address `host:port`, url `tcp://host:port`), once a datacenter running the group's instances has given it: one entry per port and datacenter (a regional group has one in each of its datacenters, each spreading connections over that datacenter's instances).",
};

const entriesOf = (value: CtyValue | undefined): ObjectValue[] =>
  Array.isArray(value)
    ? value.filter(
        (e): e is ObjectValue =>
          !!e && typeof e === "object" && !Array.isArray(e) && !(e instanceof CtyNumber) && !isUnknown(e),
      )
    : [];

export function validateExpose(config: ObjectValue, diagnostics: Diagnostics) {
  const seen = new Set<string>();
  entriesOf(config.expose).forEach((entry, index) => {
    const port = numberOf(entry.port);
    if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65_535)) {
      diagnostics.error("Invalid port", `port is a whole number from 1 to 65535, not ${port}.`, [
        "expose",
        index,
        "port",
      ]);
    }
    const protocol = typeof entry.protocol === "string" ? entry.protocol : "tcp";
    if (!(EXPOSE_PROTOCOLS as readonly string[]).includes(protocol)) {
      diagnostics.error(
        "Invalid protocol",
        `protocol is ${EXPOSE_PROTOCOLS.join(" or ")}, not ${protocol}.`,
        ["expose", index, "protocol"],
      );
    }
    const key = `${protocol}/${port}`;
    if (port !== undefined && seen.has(key)) {
      diagnostics.error("Port exposed twice", `${key} is already exposed by another expose block.`, [
        "expose",
        index,
        "port",
      ]);
    }
    seen.add(key);
  });
}

/** The create body's `expose`. */
export function exposeBody(value: CtyValue | undefined): ExposedPort[] {
  return entriesOf(value).map((entry) => ({
    port: numberOf(entry.port) ?? 0,
    protocol: (typeof entry.protocol === "string" ? entry.protocol : "tcp") as ExposedPort["protocol"],
  }));
}

/** `expose` and `endpoints` as the state holds them, from the API's group. */
export function exposeState(group: Pick<Schemas["VmGroup"], "expose" | "endpoints">): ObjectValue {
  return {
    expose: group.expose.map((entry) => ({ port: new CtyNumber(entry.port), protocol: entry.protocol })),
    endpoints: group.endpoints.map((endpoint) => ({
      port: new CtyNumber(endpoint.port),
      protocol: endpoint.protocol,
      address: endpoint.address,
      url: endpoint.url,
      datacenter: endpoint.datacenter,
    })),
  };
}
