// globalvm_vm_group: a group of VMs started from one image in one region (or where a
// placement policy says). Create sends an Idempotency-Key derived from the planned
// configuration, so an apply after a client-side timeout re-attaches to the same
// operation instead of starting another; it then follows the operation (long-poll),
// logging step, bytes and rate at INFO.

import { type ApiClient, expectData, type Operation, type Schemas } from "../../client/api.ts";
import { followOperation } from "../../client/operations.ts";
import { REFERENCEABLE_ATTRIBUTES_TEXT } from "../../schemas/vm-group-references.ts";
import {
  type AttributePath,
  type CallContext,
  CtyNumber,
  type CtyValue,
  DiagnosticError,
  defineResource,
  type Logger,
  type ObjectValue,
  requiresReplace,
  useStateForUnknown,
  valuesEqual,
} from "../index.ts";
import type { GlobalvmProviderData } from "../provider-data.ts";
import { checkRegion, parseDuration } from "./values.ts";
import { createBody, idempotencyKey, isObject, planDatacenters, validate } from "./vm-group-config.ts";
import { endpointsAttribute, exposeBlock, exposeState } from "./vm-group-expose.ts";

type UpdateVmGroup = Schemas["UpdateVmGroup"];

const INSTANCE_TYPE = [
  "object",
  {
    id: "string",
    datacenter: "string",
    host: "string",
    address: "string",
    network_ip: "string",
    state: "string",
  },
] as const;
const REFERENCE_TYPE = ["object", { vm_group: "string", instance: "number", attribute: "string" }] as const;
const DEFAULT_TIMEOUTS = { create: 20 * 60_000, update: 20 * 60_000, delete: 10 * 60_000 };
/** Group states while an operation changes it. */
const IN_FLIGHT = new Set(["pending", "provisioning", "running", "updating"]);

export function timeoutOf(plan: ObjectValue, which: keyof typeof DEFAULT_TIMEOUTS): number {
  const timeouts = isObject(plan.timeouts) ? plan.timeouts : null;
  const text = timeouts?.[which];
  return (typeof text === "string" ? parseDuration(text) : undefined) ?? DEFAULT_TIMEOUTS[which];
}

function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(1)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

export interface WaitOptions {
  timeoutMs: number;
  signal: AbortSignal;
  log: Logger;
  /** Long-poll length per request (the API allows at most 60 s). */
  pollWait?: string;
  /** What is being waited for, for messages. */
  what: string;
}

/**
 * Follows an operation until it is done, the timeout passes (the operation keeps running:
 * the next apply re-attaches) or Terraform asks the provider to stop.
 */
export async function waitForOperation(api: ApiClient, operation: Operation, options: WaitOptions) {
  let last = { at: Date.now(), bytes: operation.progress.bytes_done };
  const current = await followOperation(api, operation, {
    timeoutMs: options.timeoutMs,
    signal: options.signal,
    ...(options.pollWait ? { pollWait: options.pollWait } : {}),
    onProgress: (current) => {
      if (current === operation) return;
      const now = Date.now();
      const seconds = Math.max((now - last.at) / 1000, 1e-3);
      const rate = Math.max(0, current.progress.bytes_done - last.bytes) / seconds;
      last = { at: now, bytes: current.progress.bytes_done };
      options.log.info(`${options.what}: ${current.state}`, {
        operation: current.id,
        step: current.progress.step,
        bytes_done: current.progress.bytes_done,
        bytes_total: current.progress.bytes_total,
        rate_bytes_per_second: Math.round(rate),
        progress: `${current.progress.step ?? current.state} ${formatBytes(current.progress.bytes_done)}${current.progress.bytes_total ? ` of ${formatBytes(current.progress.bytes_total)}` : ""} at ${formatBytes(rate)}/s`,
      });
    },
  });
  if (!current.done) {
    throw new DiagnosticError(`Timed out waiting for ${options.what}`, {
      detail: `Operation ${current.id} is still ${current.state} (step ${current.progress.step ?? "none"}) after ${Math.round(options.timeoutMs / 1000)} s. It keeps running on the control plane; apply again to re-attach to it, or raise \`timeouts\`.`,
    });
  }
  if (current.state !== "succeeded") {
    throw new DiagnosticError(`${options.what} ${current.state}`, {
      detail: `Operation ${current.id}: ${current.error ? `${current.error.code}: ${current.error.message}` : current.state}`,
    });
  }
  return current;
}

/** The newest operation on the group that has not ended, if any. */
async function runningOperationOf(api: ApiClient, groupId: string, signal: AbortSignal) {
  const page = expectData(
    "Listing the VM group's operations",
    await api.GET("/v1/operations", {
      params: { query: { target_id: groupId, done: "false", page_size: 200 } },
      signal,
    }),
  );
  return page.items.at(-1) ?? null;
}

/** API field paths are the HCL shape except placement/machine blocks, which match too. */
const keepPath = (path: AttributePath) => path;

async function getGroup(context: CallContext<GlobalvmProviderData>, id: string) {
  const result = await context.providerData.api.GET("/v1/vm-groups/{id}", {
    params: { path: { id } },
    signal: context.signal,
  });
  if (result.response.status === 404) return null;
  return expectData("Reading the VM group", result);
}

type VmGroup = NonNullable<Awaited<ReturnType<typeof getGroup>>>;

async function listInstances(context: CallContext<GlobalvmProviderData>, groupId: string) {
  const result = await context.providerData.api.GET("/v1/vm-groups/{id}/instances", {
    params: { path: { id: groupId }, query: { page_size: 200 } },
    signal: context.signal,
  });
  // Deleted between the two reads: the caller sees the group gone.
  if (result.response.status === 404) return null;
  return expectData("Listing the VM group's instances", result).items;
}

type Instances = NonNullable<Awaited<ReturnType<typeof listInstances>>>;

async function groupState(
  context: CallContext<GlobalvmProviderData>,
  group: VmGroup,
  prior: ObjectValue,
  known?: Instances,
): Promise<ObjectValue> {
  const instances = known ?? (await listInstances(context, group.id));
  if (!instances) throw new DiagnosticError(`The VM group ${group.name} was deleted while it was being read`);
  const priorPlacement = prior.placement ?? null;
  const samePlacement =
    group.placement === null
      ? priorPlacement === null
      : isObject(priorPlacement) &&
        valuesEqual(["list", "string"], priorPlacement.regions ?? null, group.placement.regions as CtyValue);
  const priorMetadataFrom = prior.metadata_from ?? null;
  const apiMetadataFrom = Object.entries(group.metadata_from);
  return {
    id: group.id,
    name: group.name,
    image: group.image,
    image_family: group.image_family,
    image_version: group.image_version === null ? null : new CtyNumber(group.image_version),
    network: await networkAsConfigured(context, group.network, prior.network),
    region: group.region,
    placement: samePlacement
      ? priorPlacement
      : group.placement && {
          regions: [...group.placement.regions],
          strategy: group.placement.strategy,
          conditions: {
            min_free_vcpus: numberOrNull(group.placement.conditions.min_free_vcpus),
            min_free_memory_mb: numberOrNull(group.placement.conditions.min_free_memory_mb),
            max_transfer_bytes: numberOrNull(group.placement.conditions.max_transfer_bytes),
            require_up: group.placement.conditions.require_up,
          },
        },
    size: new CtyNumber(group.size),
    machine: { vcpus: new CtyNumber(group.machine.vcpus), memory_mb: new CtyNumber(group.machine.memory_mb) },
    metadata:
      Object.keys(group.metadata).length === 0 && prior.metadata === null ? null : { ...group.metadata },
    metadata_from:
      apiMetadataFrom.length === 0 && priorMetadataFrom === null
        ? null
        : Object.fromEntries(
            apiMetadataFrom.map(([key, ref]) => [
              key,
              { vm_group: ref.vm_group, instance: new CtyNumber(ref.instance), attribute: ref.attribute },
            ]),
          ),
    spread_hosts: group.spread_hosts === true,
    distribution: group.distribution ?? null,
    wait_for_ready: typeof prior.wait_for_ready === "boolean" ? prior.wait_for_ready : true,
    timeouts: prior.timeouts ?? null,
    datacenter: group.datacenter,
    datacenters: [...(group.datacenters ?? [])],
    state: group.state,
    ...exposeState(group),
    instances: instances.map((instance) => ({
      id: instance.id,
      datacenter: instance.datacenter,
      host: instance.host ?? null,
      address: instance.address,
      network_ip: instance.network_ip,
      state: instance.state,
    })),
  };
}

/**
 * The group's network as the configuration names it: a configuration may name it by name
 * ("default"), the API answers with its ID, and the two must not read as a change.
 */
async function networkAsConfigured(
  context: CallContext<GlobalvmProviderData>,
  networkId: string,
  prior: CtyValue | undefined,
): Promise<string> {
  if (typeof prior !== "string" || prior === networkId || prior.startsWith("net_")) return networkId;
  const result = await context.providerData.api.GET("/v1/networks/{id}", {
    params: { path: { id: networkId } },
  });
  return result.data?.name === prior ? prior : networkId;
}

const numberOrNull = (value: number | undefined) => (value === undefined ? null : new CtyNumber(value));

export const vmGroupResource = defineResource<GlobalvmProviderData>({
  typeName: "globalvm_vm_group",
  schema: {
    description: "A group of VMs started from one image in one region, or where a placement policy says.",
    attributes: {
      id: { type: "string", computed: true, planModifiers: [useStateForUnknown()] },
      name: { type: "string", required: true, planModifiers: [requiresReplace()] },
      image: {
        type: "string",
        optional: true,
        computed: true,
        description: "Image id; give it or `image_family`. With a family, the image the family names now.",
        planModifiers: [useStateForUnknown(), requiresReplace()],
      },
      image_family: {
        type: "string",
        optional: true,
        description:
          "Follow an image family instead of one image: the group moves (one instance at a time) to whatever image the family names.",
        planModifiers: [requiresReplace()],
      },
      image_version: {
        type: "number",
        optional: true,
        description: "Pinned version; null follows the current one.",
      },
      network: {
        type: "string",
        optional: true,
        computed: true,
        description:
          "The network its instances join, by ID or name (default: the project's `default` network).",
        planModifiers: [requiresReplace(), useStateForUnknown()],
      },
      region: { type: "string", optional: true, planModifiers: [requiresReplace()] },
      size: { type: "number", required: true },
      metadata: { type: ["map", "string"], optional: true },
      metadata_from: {
        type: ["map", REFERENCE_TYPE],
        optional: true,
        description: `Metadata values taken at run time from another group's instance: ${REFERENCEABLE_ATTRIBUTES_TEXT}.`,
      },
      spread_hosts: {
        type: "bool",
        default: false,
        description:
          "Anti-affinity: no two of the group's instances on one host of their datacenter (an instance no host can take fails with the datacenter scheduler's reasons). Changes in place and applies to instances placed afterwards (added by a resize, or replacing one in an update); running instances are not moved.",
      },
      distribution: {
        type: "string",
        optional: true,
        description:
          "A regional group: `even` spreads its instances over the datacenters of its `region` so that their counts differ by at most one (a resize keeps it so); `any` fills the datacenter holding the image first and overflows to the others. Unset: the whole group in one datacenter. Needs `region`; a change replaces the group.",
        planModifiers: [requiresReplace()],
      },
      wait_for_ready: { type: "bool", default: true },
      datacenter: {
        type: "string",
        computed: true,
        description: "The group's datacenter once placed; null for a regional group (see `datacenters`).",
      },
      datacenters: {
        type: ["list", "string"],
        computed: true,
        description:
          "The datacenters its instances run in: the one of a placed group, every one a regional group spans.",
      },
      state: {
        type: "string",
        computed: true,
        description:
          "The group's state. While an operation started by an apply that timed out still runs, the next plan shows it going to `ready`: that apply waits for the same operation again.",
      },
      instances: { type: ["list", INSTANCE_TYPE], computed: true },
      endpoints: endpointsAttribute,
    },
    blocks: {
      machine: {
        nesting: "single",
        minItems: 1,
        maxItems: 1,
        attributes: {
          vcpus: { type: "number", required: true },
          memory_mb: { type: "number", required: true },
        },
      },
      placement: {
        nesting: "single",
        planModifiers: [requiresReplace()],
        attributes: {
          regions: { type: ["list", "string"], required: true },
          strategy: {
            type: "string",
            optional: true,
            description: "image-locality, least-loaded or spread.",
          },
        },
        blocks: {
          conditions: {
            nesting: "single",
            attributes: {
              min_free_vcpus: { type: "number", optional: true },
              min_free_memory_mb: { type: "number", optional: true },
              max_transfer_bytes: { type: "number", optional: true },
              require_up: { type: "bool", optional: true },
            },
          },
        },
      },
      expose: exposeBlock,
      timeouts: {
        nesting: "single",
        attributes: {
          create: { type: "string", optional: true },
          update: { type: "string", optional: true },
          delete: { type: "string", optional: true },
        },
      },
    },
  },
  validateConfig(config, diagnostics) {
    validate(config, diagnostics);
  },
  async modifyPlan({ config, prior, planned, requiresReplace: replaced }, context) {
    // An operation an earlier apply stopped waiting for still runs: waiting again is a change.
    const reattaches = !!prior && planned.wait_for_ready !== false && IN_FLIGHT.has(String(prior.state));
    if (reattaches) planned.state = "ready";
    if (prior) planDatacenters(prior, planned, { replacing: replaced.length > 0, reattaches });
    if (typeof config.region === "string") await checkRegion(context.providerData, config.region, ["region"]);
    if (isObject(config.placement) && Array.isArray(config.placement.regions)) {
      for (const [index, region] of config.placement.regions.entries()) {
        if (typeof region === "string") {
          await checkRegion(context.providerData, region, ["placement", "regions", index]);
        }
      }
    }
  },
  async create({ plan }, context) {
    const { api } = context.providerData;
    const body = createBody(plan);
    const log = context.log.with({ vm_group: body.name });
    for (let generation = 1; generation <= 5; generation++) {
      const key = idempotencyKey(body, generation);
      const operation = expectData(
        "Creating the VM group",
        await api.POST("/v1/vm-groups", {
          body,
          headers: { "Idempotency-Key": key },
          signal: context.signal,
        }),
        keepPath,
      );
      const groupId = operation.target.id;
      // The same key after a destroy replays a group that no longer exists: next generation.
      if (!(await getGroup(context, groupId))) continue;
      log.info("VM group declared", { id: groupId, operation: operation.id, idempotency_key: key });
      if (plan.wait_for_ready !== false) {
        await waitForOperation(api, operation, {
          timeoutMs: timeoutOf(plan, "create"),
          signal: context.signal,
          log,
          what: `creating VM group ${body.name}`,
        });
      }
      const group = await getGroup(context, groupId);
      if (!group) throw new DiagnosticError("The VM group was deleted while it was being created");
      return groupState(context, group, plan);
    }
    throw new DiagnosticError("Could not create the VM group", {
      detail: "Every idempotency key derived from this configuration names a deleted group.",
    });
  },
  async read({ state }, context) {
    const found = await context.providerData.vmGroupReads.read(String(state.id), context.signal);
    if (!found) return null;
    return groupState(context, found.group, state, found.instances);
  },
  async update({ plan, prior }, context) {
    const { api } = context.providerData;
    const next = createBody(plan);
    const before = createBody(prior);
    const body: UpdateVmGroup = {};
    if (!valuesEqual("number", plan.image_version ?? null, prior.image_version ?? null))
      body.image_version = next.image_version ?? null;
    if (next.size !== before.size) body.size = next.size;
    if (JSON.stringify(next.machine) !== JSON.stringify(before.machine)) body.machine = next.machine;
    if (JSON.stringify(next.metadata) !== JSON.stringify(before.metadata))
      body.metadata = next.metadata ?? {};
    if (JSON.stringify(next.metadata_from) !== JSON.stringify(before.metadata_from))
      body.metadata_from = next.metadata_from ?? {};
    if (next.spread_hosts !== before.spread_hosts) body.spread_hosts = next.spread_hosts;
    const id = String(prior.id);
    // Nothing to change but an operation still running (an earlier apply timed out): re-attach.
    const operation =
      Object.keys(body).length > 0
        ? expectData(
            "Updating the VM group",
            await api.PATCH("/v1/vm-groups/{id}", { params: { path: { id } }, body, signal: context.signal }),
            keepPath,
          )
        : await runningOperationOf(api, id, context.signal);
    if (operation) {
      if (plan.wait_for_ready !== false) {
        await waitForOperation(api, operation, {
          timeoutMs: timeoutOf(plan, "update"),
          signal: context.signal,
          log: context.log.with({ vm_group: next.name }),
          what: `updating VM group ${next.name}`,
        });
      }
    }
    const group = await getGroup(context, id);
    if (!group) throw new DiagnosticError("The VM group was deleted during the update");
    return groupState(context, group, plan);
  },
  async delete({ prior }, context) {
    const { api } = context.providerData;
    const result = await api.DELETE("/v1/vm-groups/{id}", {
      params: { path: { id: String(prior.id) } },
      signal: context.signal,
    });
    if (result.response.status === 404) return;
    const operation = expectData("Deleting the VM group", result);
    await waitForOperation(api, operation, {
      timeoutMs: timeoutOf(prior, "delete"),
      signal: context.signal,
      log: context.log.with({ vm_group: String(prior.name) }),
      what: `deleting VM group ${String(prior.name)}`,
    });
  },
  importState: ({ id }) => ({ id }),
});
