// The metadata document of one instance and how a request path is answered from it, following
// the GCE metadata server: /computeMetadata/v1/<path>, leaves are plain text, directories end in
// "/" and list their entries, `recursive=true` returns a whole subtree (JSON, or `alt=text` lines
// "key value"), and every answer carries an ETag derived from the content it shows.
import { createHash } from "node:crypto";

export type MetadataTree = { [key: string]: string | MetadataTree };
export type MetadataNode = string | MetadataTree;

/** Who the instance is: served under /computeMetadata/v1/instance/. */
export interface InstanceIdentity {
  instanceId: string;
  name: string;
  /** The instance's internal name (INSTANCE.GROUP.REGION.PROJECT.globalvm.internal), when it has one. */
  hostname?: string;
  vmGroup: string;
  region: string;
  datacenter: string;
  /** The image the instance boots, as the control plane names it (global image ID or name). */
  image: string;
  /** The guest's private interfaces, served as network-interfaces/<n>/ip, mac, subnetmask, mtu, network. */
  networkInterfaces?: Record<string, string>[];
}

/** Guest attributes are written by the guest as <namespace>/<key>; flat "namespace/key" → value here. */
export type GuestAttributes = Record<string, string>;

export const METADATA_PREFIX = "/computeMetadata/v1/";

export function buildInstanceDocument(
  identity: InstanceIdentity,
  attributes: Record<string, string>,
  guestAttributes: GuestAttributes,
): MetadataTree {
  const guestTree: MetadataTree = {};
  for (const [path, value] of Object.entries(guestAttributes)) {
    const [namespace, key] = splitGuestAttributePath(path);
    const namespaceTree = guestTree[namespace];
    if (typeof namespaceTree === "object") namespaceTree[key] = value;
    else guestTree[namespace] = { [key]: value };
  }
  return {
    instance: {
      id: identity.instanceId,
      name: identity.name,
      // GCE's is the instance's internal DNS name; the guest takes its search domains from it.
      hostname: identity.hostname ?? identity.name,
      "vm-group": identity.vmGroup,
      region: identity.region,
      datacenter: identity.datacenter,
      // GCE calls the placement a zone; our datacenter is the same idea.
      zone: identity.datacenter,
      image: identity.image,
      attributes: { ...attributes },
      "guest-attributes": guestTree,
      ...(identity.networkInterfaces
        ? {
            "network-interfaces": Object.fromEntries(
              identity.networkInterfaces.map((nic, index) => [String(index), { ...nic }]),
            ),
          }
        : {}),
    },
  };
}

const NAME_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/** A guest attribute path is "namespace/key", each part a short name. */
export function parseGuestAttributePath(path: string): { namespace: string; key: string } | undefined {
  const parts = path.split("/");
  if (parts.length !== 2) return undefined;
  const [namespace, key] = parts as [string, string];
  if (!NAME_PATTERN.test(namespace) || !NAME_PATTERN.test(key)) return undefined;
  return { namespace, key };
}

function splitGuestAttributePath(path: string): [string, string] {
  const parsed = parseGuestAttributePath(path);
  if (!parsed) throw new Error(`guest attribute path must be namespace/key, got ${JSON.stringify(path)}`);
  return [parsed.namespace, parsed.key];
}

/** Path segments below /computeMetadata/v1/, or undefined when the path is outside it. */
export function metadataPathSegments(
  pathname: string,
): { segments: string[]; directory: boolean } | undefined {
  if (pathname === "/computeMetadata/v1") return { segments: [], directory: true };
  if (!pathname.startsWith(METADATA_PREFIX)) return undefined;
  const rest = pathname.slice(METADATA_PREFIX.length);
  const segments = rest.split("/").filter((segment) => segment !== "");
  return { segments, directory: rest === "" || rest.endsWith("/") };
}

export function resolveNode(tree: MetadataTree, segments: readonly string[]): MetadataNode | undefined {
  let node: MetadataNode = tree;
  for (const segment of segments) {
    if (typeof node === "string" || !Object.hasOwn(node, segment)) return undefined;
    node = node[segment] as MetadataNode;
  }
  return node;
}

/** A content tag: equal content, equal ETag, whatever rendering is asked for. */
export function etagOf(node: MetadataNode | undefined): string {
  return createHash("sha256")
    .update(JSON.stringify(node ?? null))
    .digest("hex")
    .slice(0, 16);
}

export interface RenderOptions {
  recursive: boolean;
  alt: "json" | "text";
}

export interface RenderedNode {
  body: string;
  contentType: string;
}

export function renderNode(node: MetadataNode, options: RenderOptions): RenderedNode {
  if (typeof node === "string") {
    return options.alt === "json"
      ? { body: JSON.stringify(node), contentType: "application/json" }
      : { body: node, contentType: "application/text" };
  }
  if (options.recursive) {
    return options.alt === "text"
      ? { body: flattenToLines(node, "").join(""), contentType: "application/text" }
      : { body: JSON.stringify(node), contentType: "application/json" };
  }
  const entries = Object.keys(node)
    .sort()
    .map((key) => (typeof node[key] === "string" ? key : `${key}/`));
  return options.alt === "json"
    ? { body: JSON.stringify(entries), contentType: "application/json" }
    : { body: entries.map((entry) => `${entry}\n`).join(""), contentType: "application/text" };
}

// One "path value" line per leaf, the way GCE prints `recursive=true&alt=text`. Newlines inside a
// value would break the line format, so they are escaped.
function flattenToLines(tree: MetadataTree, prefix: string): string[] {
  const lines: string[] = [];
  for (const key of Object.keys(tree).sort()) {
    const value = tree[key] as MetadataNode;
    if (typeof value === "string") lines.push(`${prefix}${key} ${value.replaceAll("\n", "\\n")}\n`);
    else lines.push(...flattenToLines(value, `${prefix}${key}/`));
  }
  return lines;
}
