// What a globalvm_vm_group's configuration means before any call: checked at plan time (every
// error naming its attribute) and turned into the POST /v1/vm-groups body, whose digest is the
// Idempotency-Key that lets an apply after a timeout re-attach to the same operation; and what
// a plan can say of the datacenters the group runs in.
import { createHash } from "node:crypto";
import type { Schemas } from "../../client/api.ts";
import { DEFAULT_NETWORK } from "../../schemas/plain.ts";
import {
  parseReferencedAttribute,
  REFERENCEABLE_ATTRIBUTES_TEXT,
} from "../../schemas/vm-group-references.ts";
import {
  CtyNumber,
  type CtyValue,
  type Diagnostics,
  isUnknown,
  type ObjectValue,
  unknown,
  valuesEqual,
} from "../index.ts";
import { numberOf, parseDuration, stringMap } from "./values.ts";
import { exposeBody, validateExpose } from "./vm-group-expose.ts";

type CreateVmGroup = Schemas["CreateVmGroup"];

const DISTRIBUTIONS = ["even", "any"];

export const isObject = (value: CtyValue | undefined): value is ObjectValue =>
  !!value &&
  typeof value === "object" &&
  !Array.isArray(value) &&
  !(value instanceof CtyNumber) &&
  !isUnknown(value);

function optionalNumber(value: CtyValue | undefined): number | undefined {
  return numberOf(value);
}

function placementBody(value: CtyValue | undefined): CreateVmGroup["placement"] {
  if (!isObject(value)) return undefined;
  const conditions = isObject(value.conditions) ? value.conditions : null;
  const regions = Array.isArray(value.regions) ? value.regions.map(String) : [];
  return {
    regions,
    strategy: (typeof value.strategy === "string" ? value.strategy : "image-locality") as "spread",
    conditions: {
      ...(conditions && optionalNumber(conditions.min_free_vcpus) !== undefined
        ? { min_free_vcpus: optionalNumber(conditions.min_free_vcpus) }
        : {}),
      ...(conditions && optionalNumber(conditions.min_free_memory_mb) !== undefined
        ? { min_free_memory_mb: optionalNumber(conditions.min_free_memory_mb) }
        : {}),
      ...(conditions && optionalNumber(conditions.max_transfer_bytes) !== undefined
        ? { max_transfer_bytes: optionalNumber(conditions.max_transfer_bytes) }
        : {}),
      require_up: conditions && typeof conditions.require_up === "boolean" ? conditions.require_up : true,
    },
  };
}

function metadataFromBody(value: CtyValue | undefined): CreateVmGroup["metadata_from"] {
  const out: NonNullable<CreateVmGroup["metadata_from"]> = {};
  if (!isObject(value)) return out;
  for (const [key, reference] of Object.entries(value)) {
    if (!isObject(reference)) continue;
    out[key] = {
      vm_group: String(reference.vm_group),
      instance: optionalNumber(reference.instance) ?? 0,
      attribute: String(reference.attribute) as "address",
    };
  }
  return out;
}

/** The POST /v1/vm-groups body for a planned resource. */
export function createBody(plan: ObjectValue): CreateVmGroup {
  const machine = isObject(plan.machine) ? plan.machine : {};
  const placement = placementBody(plan.placement);
  const imageVersion = optionalNumber(plan.image_version);
  return {
    name: String(plan.name),
    // A group follows a family or names an image; the image of a family's group is computed.
    ...(typeof plan.image_family === "string"
      ? { image_family: plan.image_family }
      : { image: String(plan.image) }),
    ...(imageVersion !== undefined ? { image_version: imageVersion } : {}),
    network: typeof plan.network === "string" ? plan.network : DEFAULT_NETWORK.name,
    ...(typeof plan.region === "string" ? { region: plan.region } : {}),
    ...(placement ? { placement } : {}),
    size: optionalNumber(plan.size) ?? 0,
    machine: { vcpus: optionalNumber(machine.vcpus) ?? 0, memory_mb: optionalNumber(machine.memory_mb) ?? 0 },
    metadata: stringMap(plan.metadata),
    metadata_from: metadataFromBody(plan.metadata_from),
    labels: {},
    expose: exposeBody(plan.expose),
    spread_hosts: plan.spread_hosts === true,
    ...(typeof plan.distribution === "string"
      ? { distribution: plan.distribution as NonNullable<CreateVmGroup["distribution"]> }
      : {}),
  };
}

/** Deterministic in the planned configuration: the same plan applied twice sends the same key. */
export function idempotencyKey(body: CreateVmGroup, generation = 1): string {
  const digest = createHash("sha256").update(JSON.stringify(body)).digest("hex").slice(0, 48);
  return `terraform-${digest}${generation > 1 ? `.${generation}` : ""}`;
}

export function validate(config: ObjectValue, diagnostics: Diagnostics) {
  const size = config.size;
  if (size instanceof CtyNumber && (size.toNumber() < 1 || !Number.isInteger(size.toNumber()))) {
    diagnostics.error("Invalid size", `size must be a whole number of at least 1, not ${size.text}.`, [
      "size",
    ]);
  }
  if (isObject(config.machine)) {
    const { vcpus, memory_mb } = config.machine;
    if (vcpus instanceof CtyNumber && (vcpus.toNumber() < 1 || !Number.isInteger(vcpus.toNumber()))) {
      diagnostics.error("Invalid vcpus", `vcpus must be a whole number of at least 1, not ${vcpus.text}.`, [
        "machine",
        "vcpus",
      ]);
    }
    if (memory_mb instanceof CtyNumber && memory_mb.toNumber() < 64) {
      diagnostics.error("Invalid memory_mb", `memory_mb must be at least 64, not ${memory_mb.text}.`, [
        "machine",
        "memory_mb",
      ]);
    }
  } else if (config.machine === null) {
    diagnostics.error("Missing machine block", "A VM group needs a `machine { vcpus, memory_mb }` block.", [
      "machine",
    ]);
  }
  const hasImage = typeof config.image === "string";
  const hasFamily = typeof config.image_family === "string";
  if (hasImage === hasFamily && !isUnknown(config.image) && !isUnknown(config.image_family)) {
    diagnostics.error(
      "Give exactly one image",
      "Give `image` (an image id) or `image_family`, not both or neither.",
      [hasImage ? "image_family" : "image"],
    );
  }
  if (hasFamily && config.image_version !== null && config.image_version !== undefined) {
    diagnostics.error(
      "A family's group cannot pin a version",
      "A group following `image_family` runs its image's current version; pin one with `image` instead.",
      ["image_version"],
    );
  }
  const hasRegion = config.region !== null && config.region !== undefined;
  const hasPlacement = config.placement !== null && config.placement !== undefined;
  if (hasRegion && hasPlacement) {
    diagnostics.error("Conflicting placement", "Give exactly one of `region` and `placement`, not both.", [
      "placement",
    ]);
  } else if (!hasRegion && !hasPlacement) {
    diagnostics.error("Missing placement", "Give exactly one of `region` and a `placement` block.", [
      "region",
    ]);
  }
  const distribution = config.distribution;
  if (typeof distribution === "string") {
    if (!DISTRIBUTIONS.includes(distribution)) {
      diagnostics.error(
        "Invalid distribution",
        `distribution must be one of ${DISTRIBUTIONS.join(", ")}, not ${JSON.stringify(distribution)}.`,
        ["distribution"],
      );
    }
    if (hasPlacement) {
      diagnostics.error(
        "A distribution needs a region",
        "A distribution spreads the group over the datacenters of its `region`: give `region`, not a `placement` block.",
        ["distribution"],
      );
    }
  }
  if (isObject(config.timeouts)) {
    for (const which of ["create", "update", "delete"]) {
      const text = config.timeouts[which];
      if (typeof text === "string" && parseDuration(text) === undefined) {
        diagnostics.error(
          "Invalid duration",
          `${JSON.stringify(text)} is not a duration like "10m" or "90s".`,
          ["timeouts", which],
        );
      }
    }
  }
  if (isObject(config.metadata_from)) {
    for (const [key, reference] of Object.entries(config.metadata_from)) {
      if (isObject(reference) && typeof reference.attribute === "string") {
        if (!parseReferencedAttribute(reference.attribute)) {
          diagnostics.error(
            "Invalid metadata_from attribute",
            `attribute must be one of ${REFERENCEABLE_ATTRIBUTES_TEXT}, not ${reference.attribute}.`,
            ["metadata_from", { key }, "attribute"],
          );
        }
      }
    }
  }
  validateExpose(config, diagnostics);
}

/**
 * What a plan says of `datacenters` (the framework has marked it unknown when anything
 * changes): the prior list while nothing that moves it changes, since a rolling update or a
 * machine change replaces each instance in its own datacenter and a single-datacenter group
 * stays where it was placed. Unknown when the group is replaced, when a regional group is
 * resized (it may gain or lose a datacenter), when the apply waits for an operation an
 * earlier one left running, and while the group has not settled (not ready, or not placed).
 */
export function planDatacenters(
  prior: ObjectValue,
  planned: ObjectValue,
  change: { replacing: boolean; reattaches: boolean },
): void {
  if (!change.reattaches && !isUnknown(planned.datacenters)) return;
  const settled = prior.state === "ready" && Array.isArray(prior.datacenters) && prior.datacenters.length > 0;
  const resized = !valuesEqual("number", planned.size ?? null, prior.size ?? null);
  const moves =
    change.replacing || change.reattaches || !settled || (typeof prior.distribution === "string" && resized);
  planned.datacenters = moves ? unknown : (prior.datacenters as CtyValue);
}
