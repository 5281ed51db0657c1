// globalvm_image: an image uploaded from a local file to its origin region. Editing the
// file changes `source_hash` at plan (in-place update); apply uploads only the chunks the
// origin manager lacks. A create or an update ends once every region the image must be in
// (the origin and `replicate_to`) holds the new version (./image-replicas.ts), within
// `timeouts`. Create sends an Idempotency-Key derived from the configuration and the file's
// hash, so an apply after a timeout finds the same image, uploads nothing again and waits
// again; an update re-attaches because the refreshed state shows replicas still missing.

import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { expectData, type Image, type Schemas } from "../../client/api.ts";
import {
  type CallContext,
  CtyNumber,
  type CtyValue,
  DiagnosticError,
  defineResource,
  isUnknown,
  type ObjectValue,
  requiresReplace,
  unknown,
  useStateForUnknown,
  valuesEqual,
} from "../index.ts";
import type { GlobalvmProviderData } from "../provider-data.ts";
import {
  appliedDeprecations,
  applyLifecycle,
  deprecationBlock,
  lifecycleAttributes,
  listVersions,
  newestDigest,
  planLifecycle,
  readDeprecations,
  validateLifecycle,
} from "./image-lifecycle.ts";
import { policyReplicas, stateHoldsPolicy, waitForReplicas } from "./image-replicas.ts";
import { fileSha256, upload } from "./image-upload.ts";
import { checkRegion, parseDuration, stringMap, stringSet } from "./values.ts";

export const REPLICA_TYPE = [
  "object",
  { region: "string", datacenter: "string", local_id: "string", state: "string", version: "number" },
] as const;

/** The data source's replicas: every copy, with why it exists (origin, replicate_to, on_demand). */
export const REPLICA_WITH_REASON_TYPE = [
  "object",
  {
    region: "string",
    datacenter: "string",
    local_id: "string",
    state: "string",
    version: "number",
    reason: "string",
  },
] as const;

const DEFAULT_TIMEOUTS = { create: 20 * 60_000, update: 20 * 60_000 };

function timeoutOf(plan: ObjectValue, which: keyof typeof DEFAULT_TIMEOUTS): number {
  const timeouts = plan.timeouts;
  const text =
    timeouts && typeof timeouts === "object" && !Array.isArray(timeouts) && !isUnknown(timeouts)
      ? (timeouts as ObjectValue)[which]
      : undefined;
  return (typeof text === "string" ? parseDuration(text) : undefined) ?? DEFAULT_TIMEOUTS[which];
}

type Replica = Image["replicas"][number];

function replicaValue(replica: Replica): ObjectValue {
  return {
    region: replica.region,
    datacenter: replica.datacenter,
    local_id: replica.local_id,
    state: replica.state,
    version: new CtyNumber(replica.version),
  };
}

function imageAttributes(image: Image): ObjectValue {
  return {
    id: image.id,
    name: image.name,
    format: image.format,
    origin_region: image.origin_region,
    labels: { ...image.labels },
    replicate_to: [...image.replicate_to].sort(),
    digest: image.digest,
    size: image.size === null ? null : new CtyNumber(image.size),
    version: image.version === null ? null : new CtyNumber(image.version),
    pinned_version: image.pinned_version === null ? null : new CtyNumber(image.pinned_version),
    family: image.family,
    members: [...image.members].sort(),
  };
}

/**
 * The resource's state attributes the API knows (`source`, `source_hash` and `timeouts` are
 * the caller's): `replicas` holds the current version's copies in the origin and
 * `replicate_to` regions only, so copies made on demand for VM groups never move it.
 */
export function imageState(image: Image): ObjectValue {
  return {
    ...imageAttributes(image),
    current_version: image.version === null ? null : new CtyNumber(image.version),
    replicas: policyReplicas(image).map(replicaValue),
  };
}

/** The data source's attributes: every replica of every version, with its reason. */
export function imageDataState(image: Image): ObjectValue {
  return {
    ...imageAttributes(image),
    replicas: image.replicas.map((replica) => ({ ...replicaValue(replica), reason: replica.reason })),
  };
}

async function getImage(context: CallContext<GlobalvmProviderData>, id: string): Promise<Image | null> {
  const result = await context.providerData.api.GET("/v1/images/{id}", {
    params: { path: { id } },
    signal: context.signal,
  });
  if (result.response.status === 404) return null;
  return expectData("Reading the image", result);
}

async function withCallerFields(
  context: CallContext<GlobalvmProviderData>,
  image: Image,
  plan: ObjectValue,
): Promise<ObjectValue> {
  return {
    ...imageState(image),
    source: plan.source ?? null,
    source_hash: plan.source_hash ?? null,
    timeouts: plan.timeouts ?? null,
    deprecation: await appliedDeprecations(context, image.id, plan),
  };
}

type CreateImage = {
  name: string;
  format: "raw";
  origin_region: string;
  labels: Record<string, string>;
  replicate_to: string[];
  family?: string;
  members?: string[];
};

/**
 * Deterministic in the planned configuration and the file's hash: an apply after a create
 * that timed out sends the same key and gets the same image back. `timeouts` is not part of it.
 */
export function imageIdempotencyKey(body: CreateImage, sourceHash: string, generation = 1): string {
  const digest = createHash("sha256")
    .update(JSON.stringify({ ...body, source_hash: sourceHash }))
    .digest("hex")
    .slice(0, 48);
  return `terraform-image-${digest}${generation > 1 ? `.${generation}` : ""}`;
}

/** The name is taken (by an image this configuration did not create, or created with other settings). */
async function nameTaken(context: CallContext<GlobalvmProviderData>, name: string): Promise<never> {
  const page = await context.providerData.api
    .GET("/v1/images", { params: { query: { name, page_size: 1 } }, signal: context.signal })
    .catch(() => undefined);
  const id = page?.data?.items[0]?.id;
  throw new DiagnosticError("The image already exists", {
    detail: `An image named ${name} already exists in this project${id ? ` (${id})` : ""}. If an earlier apply created it and stopped before recording it (a timeout, say, followed by a change of its settings), import it: terraform import <address> ${id ?? "<id>"}.`,
    path: ["name"],
  });
}

export const imageResource = defineResource<GlobalvmProviderData>({
  typeName: "globalvm_image",
  schema: {
    description: "A VM image uploaded from a local file to its origin region, replicated by policy.",
    attributes: {
      id: { type: "string", computed: true, planModifiers: [useStateForUnknown()] },
      name: { type: "string", required: true, planModifiers: [requiresReplace()] },
      source: { type: "string", required: true, description: "Path of the local image file." },
      source_hash: {
        type: "string",
        optional: true,
        computed: true,
        description: "Defaults to the sha256 of `source`: editing the file plans an in-place update.",
      },
      format: {
        type: "string",
        default: "raw",
        description: "raw, qcow2 or iso.",
        planModifiers: [requiresReplace()],
      },
      origin_region: { type: "string", required: true, planModifiers: [requiresReplace()] },
      replicate_to: { type: ["set", "string"], default: [], description: "Regions that always hold it." },
      labels: { type: ["map", "string"], default: {} },
      digest: { type: "string", computed: true },
      size: { type: "number", computed: true },
      version: { type: "number", computed: true, description: "The current version (as `current_version`)." },
      ...lifecycleAttributes,
      replicas: {
        type: ["list", REPLICA_TYPE],
        computed: true,
        description:
          "The current version's copies in the origin region and the `replicate_to` regions; copies made on demand for VM groups are in the `globalvm_image` data source.",
      },
    },
    blocks: {
      deprecation: deprecationBlock,
      timeouts: {
        nesting: "single",
        description:
          "How long a create or an update waits, once uploaded, for the origin and every `replicate_to` region to hold the new version (default 20m each). A timeout leaves the copying running: the next apply waits again, without uploading again.",
        attributes: {
          create: { type: "string", optional: true },
          update: { type: "string", optional: true },
        },
      },
    },
  },
  validateConfig(config, diagnostics) {
    const format = config.format;
    if (typeof format === "string" && !["raw", "qcow2", "iso"].includes(format)) {
      diagnostics.error("Invalid format", `format must be raw, qcow2 or iso, not ${format}.`, ["format"]);
    }
    const timeouts = config.timeouts;
    if (timeouts && typeof timeouts === "object" && !Array.isArray(timeouts) && !isUnknown(timeouts)) {
      for (const which of ["create", "update"]) {
        const text = (timeouts as ObjectValue)[which];
        if (typeof text === "string" && parseDuration(text) === undefined) {
          diagnostics.error(
            "Invalid duration",
            `${JSON.stringify(text)} is not a duration like "10m" or "90s".`,
            ["timeouts", which],
          );
        }
      }
    }
    validateLifecycle(config, diagnostics);
  },
  async modifyPlan({ config, prior, planned }, context) {
    if (typeof config.origin_region === "string") {
      await checkRegion(context.providerData, config.origin_region, ["origin_region"]);
    }
    const replicateTo = planned.replicate_to;
    if (Array.isArray(replicateTo)) {
      for (const region of replicateTo) {
        if (typeof region === "string") await checkRegion(context.providerData, region, ["replicate_to"]);
      }
    }
    if (config.source_hash === null && typeof planned.source === "string") {
      try {
        planned.source_hash = await fileSha256(
          context.providerData.resolvePath(planned.source),
          context.signal,
        );
      } catch (error) {
        throw new DiagnosticError("Cannot read the image file", {
          detail: `${planned.source}: ${(error as Error).message}`,
          path: ["source"],
        });
      }
    }
    // Only what moves the current version (an upload, a pin, a deprecation) changes what the
    // image is; labels or replication do not.
    const sameBytes =
      prior !== null && valuesEqual("string", planned.source_hash ?? null, prior.source_hash ?? null);
    const { moves } = planLifecycle(config, prior, planned, sameBytes);
    if (prior) {
      for (const name of ["digest", "size"]) planned[name] = moves ? unknown : (prior[name] as CtyValue);
      if (moves || !sameBytes) planned.replicas = unknown;
      // A refreshed state whose version is not yet held everywhere it must be (an apply that
      // timed out, a replica lost since): the apply waits for it.
      if (!isUnknown(planned.replicas) && !stateHoldsPolicy(prior)) planned.replicas = unknown;
    }
  },
  async create({ plan }, context) {
    const { api } = context.providerData;
    const source = context.providerData.resolvePath(String(plan.source));
    await stat(source).catch((error: Error) => {
      throw new DiagnosticError("Cannot read the image file", { detail: error.message, path: ["source"] });
    });
    const body: CreateImage = {
      name: String(plan.name),
      format: String(plan.format) as "raw",
      origin_region: String(plan.origin_region),
      labels: stringMap(plan.labels),
      replicate_to: stringSet(plan.replicate_to),
      // Only when set: the idempotency key of a configuration without them stays what it was.
      ...(typeof plan.family === "string" ? { family: plan.family } : {}),
      ...(stringSet(plan.members).length > 0 ? { members: stringSet(plan.members) } : {}),
    };
    const sourceHash = String(plan.source_hash);
    const log = context.log.with({ image: body.name });
    // The same key after a destroy replays an image that no longer exists: next generation.
    let found: { ticket: Schemas["UploadTicket"] | null; image: Image } | null = null;
    for (let generation = 1; generation <= 20 && !found; generation++) {
      const key = imageIdempotencyKey(body, sourceHash, generation);
      const result = await api.POST("/v1/images", {
        body,
        headers: { "Idempotency-Key": key },
        signal: context.signal,
      });
      if (
        result.response.status === 409 &&
        (result.error as { code?: string } | undefined)?.code === "already_exists"
      ) {
        await nameTaken(context, body.name);
      }
      const created = expectData("Creating the image", result);
      const image = await getImage(context, created.id);
      if (image) {
        found = { ticket: created.upload, image };
        log.info("image declared", { id: created.id, idempotency_key: key, version: image.version ?? 0 });
      }
    }
    if (!found) {
      throw new DiagnosticError("Could not create the image", {
        detail: "Every idempotency key derived from this configuration names a deleted image.",
      });
    }
    let image = found.image;
    // An earlier apply that timed out may have uploaded this very file already: not again.
    if (image.digest !== sourceHash) {
      try {
        const ticket =
          found.ticket ??
          (image.version === null
            ? null
            : expectData(
                "Starting the upload",
                await api.POST("/v1/images/{id}/uploads", {
                  params: { path: { id: image.id } },
                  signal: context.signal,
                }),
              ));
        if (!ticket) {
          throw new DiagnosticError("No regional manager can receive the upload", {
            detail: `No manager of region ${body.origin_region} is up; start one and apply again.`,
            path: ["origin_region"],
          });
        }
        await upload(context, source, ticket, body.format);
      } catch (error) {
        // A failed create records nothing in state: do not leave an empty image behind.
        if (image.version === null) {
          await api.DELETE("/v1/images/{id}", { params: { path: { id: image.id } } }).catch(() => {});
        }
        throw error;
      }
    } else {
      log.info("image already uploaded by an earlier apply: waiting for its replicas", { id: image.id });
    }
    // From here on the image is whole: a timeout leaves it to the next apply, which re-attaches.
    // The pin and the versions' states (the image's settings are the POST's).
    await applyLifecycle(
      context,
      image.id,
      plan,
      {
        family: image.family,
        members: [...image.members],
        pinned_version: image.pinned_version === null ? null : new CtyNumber(image.pinned_version),
        deprecation: [],
      },
      {},
    );
    image = await waitForReplicas(context, image.id, {
      timeoutMs: timeoutOf(plan, "create"),
      what: `creating image ${body.name}`,
    });
    return withCallerFields(context, image, plan);
  },
  async read({ state }, context) {
    const id = String(state.id);
    const [image, versions] = await Promise.all([getImage(context, id), listVersions(context, id)]);
    if (!image) return null;
    return {
      ...imageState(image),
      source: state.source ?? null,
      // Detects an upload made outside Terraform: a newest version that is not the file. (The
      // current version's digest is not it while an older version is pinned.)
      source_hash: newestDigest(versions) ?? image.digest,
      // Only an import leaves `source` null: its state gets the versions' lifecycles.
      deprecation: readDeprecations(state, versions, state.source === null),
    };
  },
  async update({ plan, prior }, context) {
    const { api } = context.providerData;
    const id = String(prior.id);
    const name = String(plan.name);
    const [current, versions] = await Promise.all([getImage(context, id), listVersions(context, id)]);
    if (!current) throw new DiagnosticError("The image was deleted during the update");
    // An earlier apply that timed out may have uploaded this very file already: not again.
    if (
      !valuesEqual("string", plan.source_hash ?? null, prior.source_hash ?? null) &&
      newestDigest(versions) !== plan.source_hash
    ) {
      const ticket = expectData(
        "Starting the upload",
        await api.POST("/v1/images/{id}/uploads", { params: { path: { id } }, signal: context.signal }),
      );
      if (!ticket) throw new DiagnosticError("No regional manager can receive the upload");
      await upload(
        context,
        context.providerData.resolvePath(String(plan.source)),
        ticket,
        String(plan.format),
      );
    }
    const policyChanged =
      !valuesEqual(["map", "string"], plan.labels ?? null, prior.labels ?? null) ||
      !valuesEqual(["set", "string"], plan.replicate_to ?? null, prior.replicate_to ?? null);
    const operationId = await applyLifecycle(
      context,
      id,
      plan,
      prior,
      policyChanged ? { labels: stringMap(plan.labels), replicate_to: stringSet(plan.replicate_to) } : {},
    );
    // Also where nothing changed but the refreshed state lacked replicas (an earlier apply
    // timed out): the plan marked `replicas` unknown, and this waits for them.
    const image = await waitForReplicas(context, id, {
      timeoutMs: timeoutOf(plan, "update"),
      what: `updating image ${name}`,
      operationId,
    });
    return withCallerFields(context, image, plan);
  },
  async delete({ prior }, context) {
    const result = await context.providerData.api.DELETE("/v1/images/{id}", {
      params: { path: { id: String(prior.id) } },
      signal: context.signal,
    });
    if (result.response.status === 404) return;
    const operation = expectData("Deleting the image", result);
    context.log.info("image deleted from the catalog; its replicas are removed by an operation", {
      operation: operation.id,
    });
  },
  importState: ({ id }) => ({ id }),
});
