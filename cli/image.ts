// globalvm image push | ls | show | versions; the lifecycle (deprecate, obsolete, activate,
// delete-version, rollback) is in image-lifecycle.ts, sharing and families in image-sharing.ts.
import { open, stat } from "node:fs/promises";
import type { ImageVersionDetail } from "../client/api.ts";
import { isImageRefused, uploadImage } from "../client/upload.ts";
import {
  type Command,
  CommandFailure,
  commandGroup,
  EXIT_OK,
  parseCommandLine,
  positionalArgs,
  UsageError,
} from "./command.ts";
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  callApi,
  connect,
  expectAnswer,
  listAll,
  oneArgumentCommandLine,
  pageQuery,
  resolveConnection,
} from "./connection.ts";
import { formatBytes, formatFields, formatTable, formatUploadProgress } from "./format.ts";
import { describeImage, findImage, NAME_PATTERN, replicaSummary, requireImage } from "./image-common.ts";
import { activate, deleteVersion, deprecate, obsolete, rollback } from "./image-lifecycle.ts";
import { family, setFamily, share, unshare } from "./image-sharing.ts";
import { barWidthFor, progressWriter } from "./progress.ts";

const IMAGE_FORMATS = ["raw", "qcow2", "iso"] as const;
type ImageFormat = (typeof IMAGE_FORMATS)[number];

const PUSH_USAGE = `Usage: globalvm image push FILE --name NAME --region REGION [--format raw|qcow2|iso] [options]

Uploads FILE as a new version of image NAME (created when it does not exist yet) to a
regional manager of REGION. Only the chunks the datacenter lacks are sent; progress (bytes,
rate, ETA, chunks skipped) goes to stderr. Prints the image ID, version and digest.

Options:
  --name NAME      image name in the project
  --region REGION  origin region: its datacenter receives the bytes
  --format F       raw, qcow2 or iso (default: detected from the file's header)
${CONNECTION_HELP}
`;

const LS_USAGE = `Usage: globalvm image ls [--shared] [--family FAMILY] [options]

Lists the project's images with their current version ("(pinned)" when set by hand), family
and where replicas are held.

Options:
  --shared         list the images other projects share with this one instead (read-only)
  --family FAMILY  only the images of this family
${CONNECTION_HELP}
`;

const SHOW_USAGE = `Usage: globalvm image show ID|NAME [options]

Shows one image: its current version (and whether it was set by hand, a rollback), family,
the projects it is shared with, digest and every datacenter's replica.

Options:
${CONNECTION_HELP}
`;

const VERSIONS_USAGE = `Usage: globalvm image versions ID|NAME [options]

Lists an image's versions, newest first: which is current, its state (active, deprecated,
obsolete, deleted), size, digest, when uploaded, the deprecate/obsolete times set (SCHEDULED,
shown when any version has one) and where each is held.

Options:
${CONNECTION_HELP}
`;

/** The format a file's first bytes announce: qcow2 magic, ISO 9660 descriptor, else raw. */
export function detectImageFormat(head: Buffer): ImageFormat {
  if (head.subarray(0, 4).equals(Buffer.from([0x51, 0x46, 0x49, 0xfb]))) return "qcow2";
  if (head.subarray(0x8001, 0x8006).toString("latin1") === "CD001") return "iso";
  return "raw";
}

async function readHead(path: string): Promise<Buffer> {
  const file = await open(path, "r");
  try {
    const head = Buffer.alloc(0x8006);
    const { bytesRead } = await file.read(head, 0, head.length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

const push: Command = {
  summary: "upload a file as a new image version, sending only missing chunks",
  usage: PUSH_USAGE,
  async run(args) {
    const { values, positionals } = parseCommandLine(
      args,
      {
        ...CONNECTION_OPTIONS,
        name: { type: "string" },
        region: { type: "string" },
        format: { type: "string" },
      },
      PUSH_USAGE,
      true,
    );
    const [file] = positionalArgs(positionals, ["FILE"], PUSH_USAGE) as [string];
    if (!values.name) throw new UsageError("image push needs --name", PUSH_USAGE);
    if (!values.region) throw new UsageError("image push needs --region", PUSH_USAGE);
    if (values.format !== undefined && !IMAGE_FORMATS.includes(values.format as ImageFormat))
      throw new UsageError(`--format must be raw, qcow2 or iso, not '${values.format}'`, PUSH_USAGE);
    const connection = resolveConnection(values, process.env);
    const info = await stat(file).catch((error: NodeJS.ErrnoException) => {
      throw new CommandFailure(`cannot read ${file}: ${error.code ?? error.message}`);
    });
    if (!info.isFile()) throw new CommandFailure(`${file} is not a regular file`);
    const format = (values.format as ImageFormat | undefined) ?? detectImageFormat(await readHead(file));
    const client = connect(connection);

    const existing = await findImage(client, values.name);
    let imageId: string;
    let ticket: { url: string; token: string; version: number; datacenter: string };
    if (existing) {
      if (existing.origin_region !== values.region)
        throw new CommandFailure(
          `image ${values.name} exists with origin region ${existing.origin_region}, not ${values.region}`,
          `push new versions to its origin region: --region ${existing.origin_region}`,
        );
      if (existing.format !== format)
        throw new CommandFailure(
          `image ${values.name} is ${existing.format}, but ${file} is ${format}`,
          values.format ? undefined : "give --format if the detection is wrong",
        );
      imageId = existing.id;
      const issued = expectAnswer(
        `start an upload of image ${values.name}`,
        await callApi(() =>
          // The size declared: a push the project's storage quota does not cover is refused here.
          client.POST("/v1/images/{id}/uploads", {
            params: { path: { id: existing.id } },
            body: { size: info.size },
          }),
        ),
      );
      if (!issued) throw new CommandFailure(`the control plane gave no upload ticket for ${values.name}`);
      ticket = issued;
    } else {
      const created = expectAnswer(
        `create image ${values.name}`,
        await callApi(() =>
          client.POST("/v1/images", {
            body: {
              name: values.name as string,
              format,
              origin_region: values.region as string,
              labels: {},
              replicate_to: [],
            },
          }),
        ),
      );
      imageId = created.id;
      if (!created.upload)
        throw new CommandFailure(
          `no regional manager of region ${values.region} is up to receive the upload`,
          "start one (`globalvm up`, or `globalvm serve regional-manager`) and push again",
        );
      ticket = created.upload;
    }

    process.stderr.write(
      `pushing ${file} (${formatBytes(info.size)}, ${format}) as ${values.name} version ${ticket.version} to ${ticket.datacenter}; chunks it already holds are skipped\n`,
    );
    const progress = progressWriter();
    const barWidth = barWidthFor();
    const upload = await uploadImage({
      path: file,
      managerUrl: ticket.url,
      token: ticket.token,
      imageId,
      version: ticket.version,
      format,
      onProgress: (p) => progress.update(formatUploadProgress(p, barWidth), p.phase),
    }).catch((error: unknown) => {
      progress.done();
      // Pushing again resumes: chunks the manager already stored are not sent twice.
      throw new CommandFailure(
        `upload to ${ticket.url} failed: ${error instanceof Error ? error.message : String(error)}`,
        isImageRefused(error)
          ? "the image's content was refused: push a standalone image of the format you declare (e.g. `qemu-img convert -O qcow2` flattens a backing chain)"
          : "push again to resume",
      );
    });
    progress.done();

    const image = expectAnswer(
      `get image ${imageId}`,
      await callApi(() => client.GET("/v1/images/{id}", { params: { path: { id: imageId } } })),
    );
    const chunksTotal = upload.record.chunkCount;
    if (values.json) {
      const result = {
        ...image,
        upload: {
          version: upload.record.version,
          method: upload.method,
          chunks_total: chunksTotal,
          chunks_sent: upload.chunksSent,
          chunks_skipped: upload.chunksSkipped,
          bytes_sent: upload.bytesSent,
        },
      };
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      process.stdout.write(
        (upload.method === "whole"
          ? `sent the whole image (${formatBytes(upload.bytesSent)}): ${ticket.datacenter} held little of it, and cut it into ${chunksTotal} chunks\n`
          : `sent ${upload.chunksSent} of ${chunksTotal} chunks (${formatBytes(upload.bytesSent)}), ${upload.chunksSkipped} skipped because ${ticket.datacenter} already had them\n`) +
          formatFields([
            ["image", `${image.name} ${image.id}`],
            ["version", String(upload.record.version)],
            ["digest", image.digest ?? `sha256:${upload.record.digest}`],
            ["size", `${formatBytes(upload.record.size)} (${upload.record.size} bytes)`],
          ]),
      );
    }
    return EXIT_OK;
  },
};

const LS_OPTIONS = {
  ...CONNECTION_OPTIONS,
  shared: { type: "boolean", default: false },
  family: { type: "string" },
} as const;

const ls: Command = {
  summary: "list the project's images (or those shared with it), optionally of one family",
  usage: LS_USAGE,
  async run(args) {
    const { values } = parseCommandLine(args, LS_OPTIONS, LS_USAGE);
    if (values.family !== undefined && !NAME_PATTERN.test(values.family))
      throw new UsageError(
        `--family must be a family name (e.g. debian-web), not '${values.family}'`,
        LS_USAGE,
      );
    const client = connect(resolveConnection(values, process.env));
    const query = {
      ...(values.shared ? { shared: "true" as const } : {}),
      ...(values.family !== undefined ? { family: values.family } : {}),
    };
    const items = await listAll(
      values.shared ? "list the images shared with this project" : "list images",
      (page_token) => client.GET("/v1/images", { params: { query: { ...query, ...pageQuery(page_token) } } }),
    );
    if (values.json) {
      process.stdout.write(`${JSON.stringify(items)}\n`);
    } else if (items.length === 0 && (values.shared || values.family !== undefined)) {
      const what = values.shared ? "no image is shared with this project" : "no image";
      process.stdout.write(`${what}${values.family !== undefined ? ` of family ${values.family}` : ""}\n`);
    } else {
      process.stdout.write(
        formatTable(
          [
            "NAME",
            "ID",
            ...(values.shared ? ["PROJECT"] : []),
            "FORMAT",
            "VERSION",
            "SIZE",
            "STATE",
            "FAMILY",
            "REPLICAS",
          ],
          items.map((image) => [
            image.name,
            image.id,
            ...(values.shared ? [image.project_id] : []),
            image.format,
            image.version === null
              ? "-"
              : `${image.version}${image.pinned_version === null ? "" : " (pinned)"}`,
            image.size === null ? "-" : formatBytes(image.size),
            image.state,
            image.family ?? "-",
            replicaSummary(image),
          ]),
        ),
      );
    }
    return EXIT_OK;
  },
};
const show: Command = {
  summary: "show one image, by ID or name",
  usage: SHOW_USAGE,
  async run(args) {
    const { argument: idOrName, json, client } = oneArgumentCommandLine(args, SHOW_USAGE, "ID|NAME");
    const image = await requireImage(client, idOrName);
    process.stdout.write(json ? `${JSON.stringify(image)}\n` : describeImage(image));
    return EXIT_OK;
  },
};

/** Where a version is held: each datacenter's replica, with its progress while it arrives. */
function versionReplicas(version: ImageVersionDetail): string {
  if (version.replicas.length === 0) return "-";
  return version.replicas
    .map((r) =>
      r.state === "transferring" && r.bytes_total
        ? `${r.datacenter}:transferring ${Math.floor((100 * r.bytes_done) / r.bytes_total)}%`
        : `${r.datacenter}:${r.state}`,
    )
    .join(",");
}

/** When the control plane deprecates or obsoletes the version on its own, if it will. */
function scheduled(version: ImageVersionDetail): string {
  const times = [
    ...(version.deprecate_at ? [`deprecate ${version.deprecate_at}`] : []),
    ...(version.obsolete_at ? [`obsolete ${version.obsolete_at}`] : []),
  ];
  return times.join(", ") || "-";
}

/** One row per version; the SCHEDULED column only when a version has a time set. */
function versionsTable(items: ImageVersionDetail[]): string {
  const withTimes = items.some((v) => v.deprecate_at !== null || v.obsolete_at !== null);
  return formatTable(
    [
      "VERSION",
      "CURRENT",
      "STATE",
      "SIZE",
      "DIGEST",
      "CREATED",
      ...(withTimes ? ["SCHEDULED"] : []),
      "REPLICAS",
    ],
    items.map((v) => [
      String(v.version),
      v.current ? "yes" : "",
      v.state,
      formatBytes(v.size),
      v.digest.slice(0, 19),
      v.created_at,
      ...(withTimes ? [scheduled(v)] : []),
      versionReplicas(v),
    ]),
  );
}

const versions: Command = {
  summary: "list an image's versions and where each is held",
  usage: VERSIONS_USAGE,
  async run(args) {
    const { argument: idOrName, json, client } = oneArgumentCommandLine(args, VERSIONS_USAGE, "ID|NAME");
    const image = await requireImage(client, idOrName);
    const listed = expectAnswer(
      "list the image's versions",
      await callApi(() => client.GET("/v1/images/{id}/versions", { params: { path: { id: image.id } } })),
    );
    const text =
      listed.items.length === 0
        ? `image ${image.name} has no version yet: upload one with \`globalvm image push\`\n`
        : versionsTable(listed.items);
    process.stdout.write(json ? `${JSON.stringify(listed)}\n` : text);
    return EXIT_OK;
  },
};

export const imageCommand = commandGroup(
  "image",
  "upload, inspect, deprecate, roll back and share VM images",
  {
    push,
    ls,
    show,
    versions,
    deprecate,
    obsolete,
    activate,
    "delete-version": deleteVersion,
    rollback,
    share,
    unshare,
    family,
    "set-family": setFamily,
  },
);
