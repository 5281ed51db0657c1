// Defaults, limits and syntax of the API's shapes that need no schema library. The Terraform
// provider imports them from here, never from the Zod schemas beside them: bundling Zod made
// most of the provider's start-up, which Terraform pays three times per plan
// (test/provider/bundle.test.ts keeps it out).

/** Every resource ID is a type prefix plus 26 time-ordered base32 characters (ULID-like). */
export const ID_PREFIXES = {
  project: "prj",
  token: "tok",
  image: "img",
  vmGroup: "vmg",
  instance: "ins",
  operation: "op",
  network: "net",
  firewallRule: "fwr",
} as const;
export type IdKind = keyof typeof ID_PREFIXES;

export function idPattern(kind: IdKind): RegExp {
  return new RegExp(`^${ID_PREFIXES[kind]}_[0-9a-hjkmnp-tv-z]{26}$`);
}

/** The network every project starts with, as GCE's auto-mode default: 10.128.0.0/9, a /20 per datacenter. */
export const DEFAULT_NETWORK = { name: "default", cidr: "10.128.0.0/9", subnetPrefixLength: 20 } as const;

export const DEFAULT_FIREWALL_PRIORITY = 1000;

/** `80` or `8000-8080`: what a firewall rule's `ports` list holds. */
export function parsePortRange(text: string): { from: number; to: number } | { error: string } {
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!match) return { error: "must be a port like 80 or a range like 8000-8080" };
  const from = Number(match[1]);
  const to = match[2] === undefined ? from : Number(match[2]);
  if (from < 1 || to > 65_535) return { error: "ports are 1 to 65535" };
  if (from > to) return { error: `the range starts after it ends (${from} > ${to})` };
  return { from, to };
}

/** How many IDs one list request may filter by (`?id=…&id=…`): a URL stays under 4 KB. */
export const MAX_LISTED_IDS = 100;

export const EXPOSE_PROTOCOLS = ["tcp"] as const;
/** Each exposed port is a NAT rule and a listening relay on the datacenter's host: keep them few. */
export const MAX_EXPOSED_PORTS = 16;
