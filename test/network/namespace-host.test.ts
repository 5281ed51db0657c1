import { describe, expect, it } from "vitest";
import { missingForNamespaceHost } from "../../regional-manager/network/namespace-host.ts";

describe("what a datacenter host in a namespace needs", () => {
  it("names each missing piece and how to get it", () => {
    const missing = missingForNamespaceHost("dc1", { exists: () => false, onPath: () => false });
    expect(missing).toEqual([
      expect.stringContaining("ip netns add dc1"),
      expect.stringContaining("nsenter"),
      expect.stringContaining("setpriv"),
      expect.stringContaining("apt-get install socat"),
    ]);
  });

  it("needs nothing more when the namespace and the programs are there", () => {
    const seen: string[] = [];
    const facts = {
      exists: (path: string) => {
        seen.push(path);
        return true;
      },
      onPath: () => true,
    };
    expect(missingForNamespaceHost("dc1", facts)).toEqual([]);
    expect(seen).toEqual(["/run/netns/dc1"]);
  });
});
