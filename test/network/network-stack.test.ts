// globalvm with guest networking, as a user drives it: a control plane and a manager that
// attaches guests to their networks run in a namespace standing for one datacenter's host
// (network-stack-process.ts); a client group is handed the web group's address through
// metadata_from and reaches it over TCP.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGuestImage, REPO_ROOT } from "../compute/support.ts";
import type { InstanceView } from "../e2e/vm-group-lifecycle-support.ts";

const host = `gvs-${randomBytes(3).toString("hex")}`;
const UNDERLAY = "192.0.2.1";

function sh(...argv: string[]): string {
  return execFileSync(argv[0] as string, argv.slice(1), {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

describe("a VM group reaches another by the address metadata_from hands it", () => {
  let outcome: {
    web?: InstanceView[];
    client?: InstanceView[];
    groups?: { network: string }[];
    error?: string;
    logs?: string;
  };

  beforeAll(() => {
    ensureGuestImage();
    sh("ip", "netns", "add", host);
    sh("ip", "-n", host, "link", "set", "lo", "up");
    sh("ip", "-n", host, "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-end");
    sh("ip", "-n", host, "addr", "add", `${UNDERLAY}/24`, "dev", "uplink");
    sh("ip", "-n", host, "link", "set", "uplink", "up");
    sh("ip", "-n", host, "link", "set", "uplink-end", "up");
    const output = execFileSync(
      "ip",
      [
        "netns",
        "exec",
        host,
        process.execPath,
        join(REPO_ROOT, "test/network/network-stack-process.ts"),
        UNDERLAY,
      ],
      { encoding: "utf8", timeout: 840_000, stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 << 20 },
    );
    outcome = JSON.parse(output.trim().split("\n").at(-1) as string);
  }, 900_000);

  afterAll(() => {
    try {
      sh("ip", "netns", "del", host);
    } catch {
      // never made
    }
  });

  it("ran the flow", () => {
    expect(outcome.error, outcome.logs).toBeUndefined();
  });

  it("gives each instance an address in the default network, reported once its NIC is on the network", () => {
    const [web] = outcome.web ?? [];
    const [client] = outcome.client ?? [];
    expect(web?.network_ip).toMatch(/^10\.128\.\d+\.\d+$/);
    expect(web?.address).toBe(web?.network_ip);
    expect(client?.address).toBe(client?.network_ip);
    expect(client?.network_ip).not.toBe(web?.network_ip);
    const [webGroup, clientGroup] = outcome.groups ?? [];
    expect(webGroup?.network).toMatch(/^net_/);
    expect(clientGroup?.network).toBe(webGroup?.network);
  });

  it("hands the client web-0's address, and the client fetches from it over TCP", () => {
    const [web] = outcome.web ?? [];
    const [client] = outcome.client ?? [];
    expect(web?.guest_attributes["net/serving"]).toBe("yes");
    expect(client?.guest_attributes["net/peer"]).toBe(web?.address);
    expect(client?.guest_attributes["net/tcp"]).toBe("ok");
  });
});
