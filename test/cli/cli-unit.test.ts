// The CLI's decisions as plain functions: argument checks, where to connect, what is missing,
// format detection, how progress and tables read, region status.
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CommandFailure, UsageError } from "../../cli/command.ts";
import { resolveConnection } from "../../cli/connection.ts";
import { formatBytes, formatDuration, formatTable, formatUploadProgress } from "../../cli/format.ts";
import { detectImageFormat } from "../../cli/image.ts";
import { formatOperationProgress } from "../../cli/operation.ts";
import { missingPrerequisites } from "../../cli/prerequisites.ts";
import { progressWriter } from "../../cli/progress.ts";
import { regionStatuses } from "../../cli/regions.ts";
import { parseUpArgs } from "../../cli/up.ts";
import { planUpHosts } from "../../cli/up-hosts.ts";
import { readUpSecrets, writeUpSecrets } from "../../cli/up-secrets.ts";

const scratch = mkdtempSync(join(tmpdir(), "globalvm-cli-unit-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("parseUpArgs", () => {
  it("defaults: two regions, port 8080 (or $PORT), .globalvm/up (or $GLOBALVM_DATA_DIR)", () => {
    expect(parseUpArgs([], {})).toEqual({
      regions: ["eu-west", "us-east"],
      port: 8080,
      dataDir: resolve(".globalvm/up"),
      json: false,
      managerLimits: {},
      httpLimits: {},
      guestNetwork: true,
      hostsPerDatacenter: 0,
    });
    expect(parseUpArgs([], { PORT: "9000", GLOBALVM_DATA_DIR: "/srv/gvm" })).toMatchObject({
      port: 9000,
      dataDir: "/srv/gvm",
    });
    expect(parseUpArgs(["--regions", "ap-south", "--port", "0", "--data-dir", "d", "--json"], {})).toEqual({
      regions: ["ap-south"],
      port: 0,
      dataDir: resolve("d"),
      json: true,
      managerLimits: {},
      httpLimits: {},
      guestNetwork: true,
      hostsPerDatacenter: 0,
    });
    expect(parseUpArgs(["--no-guest-network"], {}).guestNetwork).toBe(false);
    expect(parseUpArgs(["--hosts-per-datacenter", "3"], {}).hostsPerDatacenter).toBe(3);
    for (const bad of ["-1", "x", "17"]) {
      expect(() => parseUpArgs(["--hosts-per-datacenter", bad], {})).toThrow(/--hosts-per-datacenter/);
    }
  });

  it("gives each datacenter's manager a host of its own, and with host agents one more per agent", () => {
    const plain = planUpHosts("d", ["eu-west-a"]);
    expect(plain.hosts.map((h) => [h.datacenter, h.host, h.underlay])).toEqual([
      ["eu-west-a", undefined, "198.18.0.1"],
    ]);
    // With agents the manager's host stays: it is the datacenter's gateway for exposed ports.
    const agents = planUpHosts("d", ["eu-west-a", "us-east-a"], 2);
    expect(agents.hosts.map((h) => [h.datacenter, h.host])).toEqual([
      ["eu-west-a", undefined],
      ["eu-west-a", "host-1"],
      ["eu-west-a", "host-2"],
      ["us-east-a", undefined],
      ["us-east-a", "host-1"],
      ["us-east-a", "host-2"],
    ]);
    expect(new Set(agents.hosts.map((h) => h.netns)).size).toBe(6);
    expect(new Set(agents.hosts.map((h) => h.underlay)).size).toBe(6);
    // The names follow from the data dir: a second up on it finds the first's namespaces.
    expect(planUpHosts("d", ["eu-west-a"], 2)).toEqual(planUpHosts("d", ["eu-west-a"], 2));
  });

  it("passes the managers' limits from the environment, refusing one that is not a count", () => {
    expect(parseUpArgs([], { GLOBALVM_MAX_IMAGE_BYTES: "1073741824" }).managerLimits).toEqual({
      maxImageBytes: 1073741824,
    });
    expect(() => parseUpArgs([], { GLOBALVM_MAX_MANIFEST_CHUNKS: "1e6" })).toThrow(
      /GLOBALVM_MAX_MANIFEST_CHUNKS must be a whole number above 0, not '1e6'/,
    );
    expect(parseUpArgs([], { GLOBALVM_HTTP_BODY_IDLE_TIMEOUT_MS: "120000" }).httpLimits).toEqual({
      bodyIdleTimeoutMs: 120000,
    });
  });

  it("rejects bad regions and ports with usage errors naming them", () => {
    expect(() => parseUpArgs(["--regions", "eu-west,"], {})).toThrow(UsageError);
    expect(() => parseUpArgs(["--regions", "-x"], {})).toThrow(/'-x' is not a region name|--regions/);
    expect(() => parseUpArgs(["--regions", "a".repeat(62)], {})).toThrow(/is not a region name/);
    expect(parseUpArgs(["--regions", "a".repeat(61)], {}).regions).toEqual(["a".repeat(61)]);
    expect(() => parseUpArgs(["--port", "65536"], {})).toThrow(/--port must be a number from 0 to 65535/);
    expect(() => parseUpArgs(["--verbose"], {})).toThrow(/'--verbose'/);
  });
});

describe("resolveConnection", () => {
  it("flags win over the environment", () => {
    expect(
      resolveConnection(
        { endpoint: "http://a", token: "t1" },
        { GLOBALVM_ENDPOINT: "http://b", GLOBALVM_TOKEN: "t2" },
      ),
    ).toEqual({ endpoint: "http://a", token: "t1" });
    expect(resolveConnection({}, { GLOBALVM_ENDPOINT: "http://b", GLOBALVM_TOKEN: "t2" })).toEqual({
      endpoint: "http://b",
      token: "t2",
    });
  });

  it("names exactly the missing variables", () => {
    const failure = (() => {
      try {
        resolveConnection({}, { GLOBALVM_TOKEN: "t" });
      } catch (error) {
        return error as CommandFailure;
      }
    })();
    expect(failure).toBeInstanceOf(CommandFailure);
    expect(failure?.message).toBe("set GLOBALVM_ENDPOINT (or --endpoint)");
    expect(failure?.detail).toContain("globalvm up");
  });
});

describe("missingPrerequisites", () => {
  it("lists each missing tool and the guest image with how to get them", () => {
    const none = missingPrerequisites({ onPath: () => false, exists: () => false }, "/repo/guest.qcow2");
    expect(none).toEqual([
      "qemu-system-x86_64 is not on PATH (Debian/Ubuntu: sudo apt-get install -y qemu-system-x86)",
      "qemu-img is not on PATH (Debian/Ubuntu: sudo apt-get install -y qemu-utils)",
      "the guest image /repo/guest.qcow2 is missing (build it: npm run guest-image)",
    ]);
    const onlyImg = missingPrerequisites(
      { onPath: (tool) => tool !== "qemu-img", exists: () => true },
      "/repo/guest.qcow2",
    );
    expect(onlyImg).toEqual(["qemu-img is not on PATH (Debian/Ubuntu: sudo apt-get install -y qemu-utils)"]);
    expect(missingPrerequisites({ onPath: () => true, exists: () => true })).toEqual([]);
  });
});

describe("detectImageFormat", () => {
  it("reads qcow2 magic and the ISO 9660 descriptor, else raw", () => {
    expect(detectImageFormat(Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]))).toBe("qcow2");
    const iso = Buffer.alloc(0x8006);
    iso.write("CD001", 0x8001, "latin1");
    expect(detectImageFormat(iso)).toBe("iso");
    expect(detectImageFormat(Buffer.alloc(512))).toBe("raw");
    expect(detectImageFormat(Buffer.alloc(0))).toBe("raw");
  });
});

describe("formatting", () => {
  it("bytes and durations", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(4 << 20)).toBe("4.0 MiB");
    expect(formatBytes(1.5 * 2 ** 30)).toBe("1.5 GiB");
    expect(formatBytes(300 * 2 ** 20)).toBe("300 MiB");
    expect(formatDuration(0)).toBe("0s");
    expect(formatDuration(59.4)).toBe("59s");
    expect(formatDuration(61)).toBe("1m01s");
    expect(formatDuration(3 * 3600 + 120)).toBe("3h02m");
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe("--");
  });

  it("upload progress: bytes, rate, ETA and chunks skipped; a bar for terminals", () => {
    const progress = {
      phase: "sending" as const,
      bytesDone: 25 << 20,
      bytesTotal: 100 << 20,
      bytesPerSecond: 5 << 20,
      chunksSkipped: 7,
    };
    expect(formatUploadProgress(progress)).toBe(
      "sending     25%  25 MiB/100 MiB  5.0 MiB/s  ETA 15s  7 chunks skipped",
    );
    expect(formatUploadProgress(progress, 8)).toContain("[##------]  25%");
    expect(formatUploadProgress({ ...progress, bytesPerSecond: 0 })).toContain("ETA --");
    // Nothing to send (every chunk held): complete at once.
    expect(formatUploadProgress({ ...progress, bytesDone: 0, bytesTotal: 0, chunksSkipped: 9 })).toMatch(
      /100%.*ETA 0s\s+9 chunks skipped/,
    );
    expect(formatUploadProgress({ ...progress, phase: "chunking" })).not.toContain("skipped");
  });

  it("tables pad every column but the last", () => {
    expect(
      formatTable(
        ["A", "BB"],
        [
          ["xyz", "1"],
          ["q", "22"],
        ],
      ),
    ).toBe("A    BB\nxyz  1\nq    22\n");
  });

  it("operation progress names state, step, bytes and each datacenter", () => {
    const line = formatOperationProgress({
      kind: "create-vm-group",
      state: "running",
      progress: {
        step: "transferring-image",
        bytes_done: 1 << 20,
        bytes_total: 4 << 20,
        children: [
          { datacenter: "us-east-a", step: "transferring-image", bytes_done: 1 << 20, bytes_total: 4 << 20 },
        ],
      },
    } as never);
    expect(line).toBe(
      "create-vm-group running  transferring-image 1.0 MiB/4.0 MiB  us-east-a: transferring-image 1.0 MiB/4.0 MiB",
    );
  });
});

describe("progressWriter", () => {
  function fakeStream(isTTY: boolean) {
    const writes: string[] = [];
    return { writes, stream: { isTTY, columns: 80, write: (text: string) => writes.push(text) } as never };
  }

  it("without a terminal: a line per phase change and at most one a second, the last state of each phase kept, no repeats", () => {
    let now = 0;
    const { writes, stream } = fakeStream(false);
    const writer = progressWriter(stream, () => now);
    writer.update("sending 10%", "sending");
    now = 200;
    writer.update("sending 50%", "sending");
    now = 400;
    writer.update("sending 100%", "sending");
    writer.update("committing", "committing");
    now = 1500;
    writer.update("committing 2", "committing");
    writer.done();
    now = 3000;
    writer.update("committing 2", "committing");
    expect(writes).toEqual(["sending 10%\n", "sending 100%\n", "committing\n", "committing 2\n"]);
  });

  it("on a terminal: redraws one line in place and ends it", () => {
    let now = 0;
    const { writes, stream } = fakeStream(true);
    const writer = progressWriter(stream, () => now);
    writer.update("a", "sending");
    now = 50;
    writer.update("b".repeat(100), "sending");
    writer.done();
    // Cut to the terminal's width: a wrapped line could not be redrawn in place.
    expect(writes).toEqual(["\r\x1b[Ka", `\r\x1b[K${"b".repeat(79)}`, "\n"]);
  });
});

describe("regionStatuses", () => {
  it("a region is as available as its best datacenter", () => {
    const statuses = regionStatuses(
      [
        { name: "eu-west", display_name: "eu-west" },
        { name: "us-east", display_name: "us-east" },
        { name: "ap-south", display_name: "ap-south" },
      ],
      [
        { name: "eu-west-a", region: "eu-west", status: "down" as const },
        { name: "eu-west-b", region: "eu-west", status: "degraded" as const },
        { name: "us-east-a", region: "us-east", status: "up" as const },
      ],
    );
    expect(statuses.map((s) => [s.name, s.status, s.datacenters.length])).toEqual([
      ["eu-west", "degraded", 2],
      ["us-east", "up", 1],
      ["ap-south", "unknown", 0],
    ]);
  });
});

describe("up secrets", () => {
  it("round-trip through a 0600 file; a missing file is an empty state", () => {
    const dir = join(scratch, "secrets");
    expect(readUpSecrets(dir)).toEqual({ managers: {} });
    mkdirSync(dir);
    const secrets = {
      admin_token: "a",
      project: { id: "prj_x", token: "t" },
      managers: { "eu-west-a": "c" },
    };
    writeUpSecrets(dir, secrets);
    expect(readUpSecrets(dir)).toEqual(secrets);
    expect(statSync(join(dir, "secrets.json")).mode & 0o777).toBe(0o600);
  });
});
