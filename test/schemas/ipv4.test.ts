import { describe, expect, it } from "vitest";
import { formatIpv4, networkCidrProblem, parseCidr, parseIpv4, subnetMask } from "../../schemas/ipv4.ts";

describe("IPv4 arithmetic", () => {
  it("parses and formats dotted quads, refusing what is not one", () => {
    expect(parseIpv4("10.30.0.2")).toBe(0x0a1e0002);
    expect(formatIpv4(0xffffffff)).toBe("255.255.255.255");
    for (const text of ["10.30.0", "10.30.0.256", "10.030.0.1", "a.b.c.d", ""])
      expect(parseIpv4(text)).toBeUndefined();
  });

  it("gives the netmask of a prefix length", () => {
    expect(subnetMask(24)).toBe("255.255.255.0");
    expect(subnetMask(9)).toBe("255.128.0.0");
    expect(subnetMask(32)).toBe("255.255.255.255");
    expect(subnetMask(0)).toBe("0.0.0.0");
  });

  it("parses CIDR blocks, naming the block when host bits are set", () => {
    expect(parseCidr("10.128.0.0/9")).toEqual({ base: 0x0a800000, prefixLength: 9 });
    expect(parseCidr("10.128.0.1/9")).toEqual({ error: "has host bits set; the block is 10.128.0.0/9" });
  });

  it("allows a network only in private or shared space, of a sane size", () => {
    expect(networkCidrProblem("10.20.0.0/16")).toBeUndefined();
    expect(networkCidrProblem("8.8.0.0/16")).toMatch(/must lie within/);
    expect(networkCidrProblem("10.0.0.0/30")).toMatch(/prefix length/);
  });
});
