// globalvm_image: an image uploaded from a local file to its origin region. Editing the
// file changes `source_hash` at plan (in-place update); apply uploads only the chunks the
// origin manager lacks.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { expectData, type Image } from "../../client/api.ts";
import { isImageRefused, type UploadProgress, uploadImage } from "../../client/upload.ts";
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
import { checkRegion, stringMap, stringSet } from "./values.ts";

export const REPLICA_TYPE = [
  "object",
  { region: "string", datacenter: "string", local_id: "string", state: "string", version: "number" },
] as const;

export async function fileSha256(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, signal ? { signal } : {})) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}

/** The state attributes the API knows; `source` and `source_hash` are the caller's. */
export function imageState(image: Image): ObjectValue {
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
    replicas: image.replicas.map((replica) => ({
      region: replica.region,
      datacenter: replica.datacenter,
      local_id: replica.local_id,
      state: replica.state,
      version: new CtyNumber(replica.version),
    })),
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

async function upload(
  context: CallContext<GlobalvmProviderData>,
  path: string,
  ticket: { url: string; token: string; image_id: string; version: number },
  format: string,
) {
  const log = context.log.with({ image: ticket.image_id, version: ticket.version });
  let lastLog = 0;
  const onProgress = (progress: UploadProgress) => {
    const now = Date.now();
    if (now - lastLog < 2000) return;
    lastLog = now;
    log.info("uploading image", {
      step: progress.phase,
      bytes_done: progress.bytesDone,
      bytes_total: progress.bytesTotal,
      rate_bytes_per_second: Math.round(progress.bytesPerSecond),
    });
  };
  try {
    const result = await uploadImage({
      path,
      managerUrl: ticket.url,
      token: ticket.token,
      imageId: ticket.image_id,
      version: ticket.version,
      format: format as "raw",
      signal: context.signal,
      onProgress,
    });
    log.info("image uploaded", {
      bytes_sent: result.bytesSent,
      chunks_sent: result.chunksSent,
      chunks_skipped: result.chunksSkipped,
    });
    return result;
  } catch (error) {
    if (context.signal.aborted) throw error;
    throw new DiagnosticError("Uploading the image failed", {
      detail: `${path} → ${ticket.url}: ${(error as Error).message}. ${
        isImageRefused(error)
          ? "The image's content was refused: give a standalone image of the declared format (`qemu-img convert -O qcow2` flattens a backing chain)."
          : "Applying again resumes: chunks already stored are not sent again."
      }`,
      path: ["source"],
      cause: error,
    });
  }
}

function withCallerFields(image: Image, plan: ObjectValue): ObjectValue {
  return { ...imageState(image), source: plan.source ?? null, source_hash: plan.source_hash ?? null };
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
      version: { type: "number", computed: true },
      replicas: { type: ["list", REPLICA_TYPE], computed: true },
    },
  },
  validateConfig(config, diagnostics) {
    const format = config.format;
    if (typeof format === "string" && !["raw", "qcow2", "iso"].includes(format)) {
      diagnostics.error("Invalid format", `format must be raw, qcow2 or iso, not ${format}.`, ["format"]);
    }
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
        planned.source_hash = await fileSha256(planned.source, context.signal);
      } catch (error) {
        throw new DiagnosticError("Cannot read the image file", {
          detail: `${planned.source}: ${(error as Error).message}`,
          path: ["source"],
        });
      }
    }
    if (prior) {
      // Only a new upload changes what the image is; labels or replication do not.
      const sameBytes = valuesEqual("string", planned.source_hash ?? null, prior.source_hash ?? null);
      for (const name of ["digest", "size", "version", "replicas"]) {
        if (!sameBytes) planned[name] = unknown;
        else if (name !== "replicas" && isUnknown(planned[name])) planned[name] = prior[name] as CtyValue;
      }
    }
  },
  async create({ plan }, context) {
    const { api } = context.providerData;
    const source = String(plan.source);
    await stat(source).catch((error: Error) => {
      throw new DiagnosticError("Cannot read the image file", { detail: error.message, path: ["source"] });
    });
    const body = {
      name: String(plan.name),
      format: String(plan.format) as "raw",
      origin_region: String(plan.origin_region),
      labels: stringMap(plan.labels),
      replicate_to: stringSet(plan.replicate_to),
    };
    const created = expectData(
      "Creating the image",
      await api.POST("/v1/images", { body, signal: context.signal }),
    );
    try {
      if (!created.upload) {
        throw new DiagnosticError("No regional manager can receive the upload", {
          detail: `No manager of region ${body.origin_region} is up; start one and apply again.`,
          path: ["origin_region"],
        });
      }
      await upload(context, source, created.upload, body.format);
    } catch (error) {
      // A failed create records nothing in state: do not leave an empty image behind.
      await api.DELETE("/v1/images/{id}", { params: { path: { id: created.id } } }).catch(() => {});
      throw error;
    }
    const image = await getImage(context, created.id);
    if (!image) throw new DiagnosticError("The image disappeared right after its upload");
    return withCallerFields(image, plan);
  },
  async read({ state }, context) {
    const image = await getImage(context, String(state.id));
    if (!image) return null;
    return {
      ...imageState(image),
      source: state.source ?? null,
      // Detects an upload made outside Terraform: a digest that is not the file's.
      source_hash: image.digest,
    };
  },
  async update({ plan, prior }, context) {
    const { api } = context.providerData;
    const id = String(prior.id);
    if (!valuesEqual("string", plan.source_hash ?? null, prior.source_hash ?? null)) {
      const ticket = expectData(
        "Starting the upload",
        await api.POST("/v1/images/{id}/uploads", { params: { path: { id } }, signal: context.signal }),
      );
      if (!ticket) throw new DiagnosticError("No regional manager can receive the upload");
      await upload(context, String(plan.source), ticket, String(plan.format));
    }
    if (
      !valuesEqual(["map", "string"], plan.labels ?? null, prior.labels ?? null) ||
      !valuesEqual(["set", "string"], plan.replicate_to ?? null, prior.replicate_to ?? null)
    ) {
      expectData(
        "Updating the image",
        await api.PATCH("/v1/images/{id}", {
          params: { path: { id } },
          body: { labels: stringMap(plan.labels), replicate_to: stringSet(plan.replicate_to) },
          signal: context.signal,
        }),
        (path) => path.slice(0, 1),
      );
    }
    const image = await getImage(context, id);
    if (!image) throw new DiagnosticError("The image was deleted during the update");
    return withCallerFields(image, plan);
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
