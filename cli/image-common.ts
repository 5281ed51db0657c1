// What the image subcommands share: finding an image by ID or name, describing it, reading a
// --version flag, and answers whose refusals name the code, the flag and what to do next.
import type { ApiClient, Image, Problem } from "../client/api.ts";
import { CommandFailure, UsageError } from "./command.ts";
import { callApi, findByIdOrName } from "./connection.ts";
import { formatBytes, formatFields, formatTable } from "./format.ts";

export const IMAGE_ID_PATTERN = /^img_[0-9a-hjkmnp-tv-z]{26}$/;
export const PROJECT_ID_PATTERN = /^prj_[0-9a-hjkmnp-tv-z]{26}$/;
/** Names of images and families (schemas/common.ts NameSchema). */
export const NAME_PATTERN = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function findImage(client: ApiClient, idOrName: string): Promise<Image | undefined> {
  return findByIdOrName(
    "image",
    idOrName,
    IMAGE_ID_PATTERN,
    () => client.GET("/v1/images/{id}", { params: { path: { id: idOrName } } }),
    () => client.GET("/v1/images", { params: { query: { name: idOrName } } }),
  );
}

/** The image, or a failure that says where to look. */
export async function requireImage(client: ApiClient, idOrName: string): Promise<Image> {
  const image = await findImage(client, idOrName);
  if (!image) throw new CommandFailure(`no image ${idOrName} in this project`, "see `globalvm image ls`");
  return image;
}

export function replicaSummary(image: Image): string {
  if (image.replicas.length === 0) return "-";
  return image.replicas.map((r) => `${r.datacenter}:${r.state}@v${r.version}`).join(",");
}

/** The current version, and why it is the current one. */
export function currentVersionText(image: Image): string {
  if (image.version === null) return "-";
  return image.pinned_version === null
    ? `${image.version} (the newest active version)`
    : `${image.version} (set by hand: \`globalvm image rollback ${image.name} --latest\` follows the newest again)`;
}

export function describeImage(image: Image): string {
  const fields: [string, string][] = [
    ["id", image.id],
    ["name", image.name],
    ["project", image.project_id],
    ["format", image.format],
    ["state", image.state],
    ["origin region", image.origin_region],
    ["version", currentVersionText(image)],
    ["pinned version", image.pinned_version === null ? "-" : String(image.pinned_version)],
    ["family", image.family ?? "-"],
    ["size", image.size === null ? "-" : `${formatBytes(image.size)} (${image.size} bytes)`],
    ["digest", image.digest ?? "-"],
    ["replicate to", image.replicate_to.join(", ") || "-"],
    ["members", image.members.join(", ") || "-"],
  ];
  const replicas = formatTable(
    ["DATACENTER", "REGION", "VERSION", "STATE", "BYTES", "LOCAL ID"],
    image.replicas.map((r) => [
      r.datacenter,
      r.region,
      String(r.version),
      r.state,
      r.bytes_total === null
        ? formatBytes(r.bytes_done)
        : `${formatBytes(r.bytes_done)}/${formatBytes(r.bytes_total)}`,
      r.local_id ?? "-",
    ]),
  );
  return `${formatFields(fields)}\nreplicas:\n${image.replicas.length > 0 ? replicas : "  none\n"}`;
}

/** A version number given to `flag` (--version, --to): a whole number from 1. */
export function parseVersionFlag(text: string | undefined, flag: string, usage: string): number {
  if (text === undefined) throw new UsageError(`${flag} N is required`, usage);
  const version = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(version) || version < 1 || version > 2_147_483_647)
    throw new UsageError(`${flag} must be a version number (1, 2, …), not '${text}'`, usage);
  return version;
}

/** A time given to `flag` (--at): an ISO 8601 date or date-time, sent as UTC. */
export function parseTimeFlag(text: string, flag: string, usage: string): string {
  const ms = Date.parse(text);
  if (
    !/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(text) ||
    Number.isNaN(ms)
  )
    throw new UsageError(
      `${flag} must be an ISO 8601 time such as 2027-01-31T12:00:00Z or 2027-01-31, not '${text}'`,
      usage,
    );
  return new Date(ms).toISOString();
}

export interface RefusalHelp {
  /** The command-line flag a request field came from ("current_version" → "--to"). */
  flagOf?: (path: string) => string | undefined;
  /** What to do next, by the problem's code (version_in_use, not_found, …). */
  hints?: Record<string, string>;
}

/**
 * The answer's data, or a CommandFailure naming the problem's code and status, its detail, the
 * flags whose values were refused, and what to do next.
 */
export function expectImageAnswer<T>(
  action: string,
  result: { data?: T; error?: unknown; response: Response },
  help: RefusalHelp = {},
): T {
  if (result.data !== undefined && result.response.ok) return result.data;
  const problem = (result.error ?? {}) as Partial<Problem>;
  const status = result.response.status;
  const code = problem.code ?? result.response.statusText;
  const fields = (problem.errors ?? []).map((e) => {
    const flag = help.flagOf?.(e.path);
    return flag ? `${flag}: ${e.message} (${e.path})` : `${e.path}: ${e.message}`;
  });
  const hint = problem.code ? help.hints?.[problem.code] : undefined;
  const detail = [problem.detail ?? `HTTP ${status}`, ...fields, ...(hint ? [hint] : [])].join("\n");
  throw new CommandFailure(`${action} failed: ${code} (${status})`, detail);
}

/** Runs one image call and expects its answer (see expectImageAnswer). */
export async function imageCall<T>(
  action: string,
  call: () => Promise<{ data?: T; error?: unknown; response: Response }>,
  help?: RefusalHelp,
): Promise<T> {
  return expectImageAnswer(action, await callApi(call), help);
}
