// IPv4 addresses and CIDR blocks as numbers: what networks, subnets and address allocation are
// computed with, on the control plane and on the managers alike.

export interface Ipv4Cidr {
  /** The network address, as an unsigned 32-bit number. */
  base: number;
  prefixLength: number;
}

const OCTET = /^(0|[1-9][0-9]{0,2})$/;

/** The address as a number, or undefined when `text` is not a dotted-quad IPv4 address. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!OCTET.test(part) || Number(part) > 255) return undefined;
    value = value * 256 + Number(part);
  }
  return value;
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

/** Addresses in a block of this prefix length. */
export function blockSize(prefixLength: number): number {
  return 2 ** (32 - prefixLength);
}

/** The dotted-quad netmask of a prefix length: 24 → 255.255.255.0. */
export function subnetMask(prefixLength: number): string {
  return formatIpv4(prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0);
}

export function formatCidr(cidr: Ipv4Cidr): string {
  return `${formatIpv4(cidr.base)}/${cidr.prefixLength}`;
}

/** A CIDR block, or the reason `text` is not one (host bits set included). */
export function parseCidr(text: string): Ipv4Cidr | { error: string } {
  const match = /^([0-9.]+)\/([0-9]{1,2})$/.exec(text);
  const address = match ? parseIpv4(match[1] as string) : undefined;
  const prefixLength = match ? Number(match[2]) : Number.NaN;
  if (address === undefined || !(prefixLength >= 0 && prefixLength <= 32)) {
    return { error: "must be an IPv4 CIDR block like 10.20.0.0/16" };
  }
  const base = address - (address % blockSize(prefixLength));
  if (base !== address) {
    return { error: `has host bits set; the block is ${formatCidr({ base, prefixLength })}` };
  }
  return { base, prefixLength };
}

export function cidrContains(outer: Ipv4Cidr, inner: Ipv4Cidr): boolean {
  return (
    inner.prefixLength >= outer.prefixLength &&
    inner.base >= outer.base &&
    inner.base + blockSize(inner.prefixLength) <= outer.base + blockSize(outer.prefixLength)
  );
}

export function cidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  return a.base < b.base + blockSize(b.prefixLength) && b.base < a.base + blockSize(a.prefixLength);
}

/** Ranges a network may use: private (RFC 1918) and shared (RFC 6598) address space. */
export const NETWORK_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"] as const;
/** Large enough for a subnet in many datacenters, small enough to stay a network, not the Internet. */
export const NETWORK_PREFIX_LENGTHS = { min: 8, max: 28 } as const;

/**
 * Why `text` cannot be a network's range, or undefined when it can. Plain (no schema library),
 * so the Terraform provider checks at plan time exactly what the API checks.
 */
export function networkCidrProblem(text: string): string | undefined {
  const cidr = parseCidr(text);
  if ("error" in cidr) return cidr.error;
  const { min, max } = NETWORK_PREFIX_LENGTHS;
  if (cidr.prefixLength < min || cidr.prefixLength > max) {
    return `the prefix length must be between /${min} and /${max}`;
  }
  const inRange = NETWORK_RANGES.some((range) => cidrContains(parseCidr(range) as Ipv4Cidr, cidr));
  return inRange ? undefined : `must lie within ${NETWORK_RANGES.join(", ")}`;
}
