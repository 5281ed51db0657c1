import { describe, expect, it } from "vitest";
import {
  type HostDecision,
  type HostRequest,
  type SchedulerHost,
  scheduleInstance,
  scheduleInstances,
} from "../../regional-manager/hosts/scheduler.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function host(name: string, over: Partial<SchedulerHost> = {}): SchedulerHost {
  return {
    name,
    state: "up",
    arch: "x86_64",
    formats: ["raw", "qcow2"],
    capacity: { vcpus: 8, memoryMb: 16_384, diskBytes: 100 * GiB },
    free: { vcpus: 8, memoryMb: 16_384, diskBytes: 100 * GiB },
    cached: new Set(),
    placed: [],
    networks: false,
    ...over,
  };
}

/** A host of `vcpus` vCPUs, all free. */
const small = (name: string, vcpus: number) =>
  host(name, {
    capacity: { vcpus, memoryMb: 4096, diskBytes: 10 * GiB },
    free: { vcpus, memoryMb: 4096, diskBytes: 10 * GiB },
  });

function request(over: Partial<HostRequest> = {}): HostRequest {
  return {
    instanceId: "inst_a",
    vmGroupId: "vmg_1",
    spreadHosts: false,
    vcpus: 1,
    memoryMb: 512,
    image: { imageId: "img_a", version: 3, format: "raw", size: 64 * MiB },
    ...over,
  };
}

const group = (n: number, over: Partial<HostRequest> = {}) =>
  Array.from({ length: n }, (_, i) => request({ instanceId: `inst_${i + 1}`, ...over }));

const outcomes = (d: HostDecision) => d.candidates.map((c) => [c.host, c.outcome]);
const reasonsOf = (d: HostDecision, name: string) => d.candidates.find((c) => c.host === name)?.reasons;

describe("filters", () => {
  // Each filter alone, next to a host that passes, so the refusal is that filter's and nothing else's.
  const refusedAlone = (bad: SchedulerHost, req = request()) => {
    const d = scheduleInstance([bad, host("ok")], req);
    expect(d.host).toBe("ok");
    expect(outcomes(d)).toEqual([
      ["ok", "chosen"],
      [bad.name, "refused"],
    ]);
    return reasonsOf(d, bad.name);
  };

  it("refuses a down host", () => {
    expect(refusedAlone(host("h1", { state: "down" }))).toEqual(["down"]);
  });

  it("refuses another architecture, x86_64 by default", () => {
    expect(refusedAlone(host("h1", { arch: "aarch64" }))).toEqual(["architecture aarch64 (needs x86_64)"]);
    const arm = scheduleInstance([host("h1", { arch: "aarch64" }), host("ok")], request({ arch: "aarch64" }));
    expect(arm.host).toBe("h1");
  });

  it("refuses a host that cannot boot the image's format", () => {
    expect(
      refusedAlone(
        host("h1", { formats: ["raw"] }),
        request({ image: { ...request().image, format: "qcow2" } }),
      ),
    ).toEqual(["cannot boot qcow2 images (supports raw)"]);
  });

  it("refuses too few free vCPUs: no overcommit", () => {
    const busy = host("h1", {
      capacity: { ...host("h1").capacity, vcpus: 2 },
      free: { ...host("h1").free, vcpus: 1 },
    });
    expect(refusedAlone(busy, request({ vcpus: 2 }))).toEqual(["1 of 2 vCPUs free (needs 2)"]);
  });

  it("refuses too little free memory", () => {
    const busy = host("h1", { free: { ...host("h1").free, memoryMb: 256 } });
    expect(refusedAlone(busy)).toEqual(["256 of 16384 MiB memory free (needs 512)"]);
  });

  it("refuses too little disk for an uncached version, but not when it is cached", () => {
    const full = host("h1", { free: { ...host("h1").free, diskBytes: 10 * MiB } });
    expect(refusedAlone(full)).toEqual([
      "10 MiB of 100 GiB disk free (needs 64 MiB for img_a@3, not cached)",
    ]);
    const cached = { ...full, cached: new Set(["img_a@3"]) };
    expect(scheduleInstance([cached], request()).host).toBe("h1");
  });

  it("refuses, with spread_hosts, a host holding an instance of the group", () => {
    const holding = host("h1", { placed: [{ instanceId: "inst_z", vmGroupId: "vmg_1" }] });
    expect(refusedAlone(holding, request({ spreadHosts: true }))).toEqual([
      "anti-affinity: already holds inst_z of group vmg_1 (spread_hosts)",
    ]);
    // Another group's instances, or the instance itself (a reschedule), do not count.
    const others = host("h1", {
      placed: [
        { instanceId: "inst_y", vmGroupId: "vmg_2" },
        { instanceId: "inst_a", vmGroupId: "vmg_1" },
      ],
    });
    expect(scheduleInstance([others], request({ spreadHosts: true })).host).toBe("h1");
  });

  it("lists every reason of a host, and every host in the refusal", () => {
    const d = scheduleInstance(
      [host("h2", { state: "down" }), small("h1", 0), host("h3", { state: "down", arch: "aarch64" })],
      request(),
    );
    expect(d.host).toBeNull();
    expect(outcomes(d).map(([, o]) => o)).toEqual(["refused", "refused", "refused"]);
    expect(d.refusal).toBe(
      "no host can run inst_a: h1: 0 of 0 vCPUs free (needs 1); h2: down; h3: down, architecture aarch64 (needs x86_64)",
    );
    expect(scheduleInstance([], request()).refusal).toBe("no host can run inst_a: no host is registered");
  });
});

describe("weighers", () => {
  it("prefers the host with the version cached over a slightly less loaded one", () => {
    const loaded = host("h1", { cached: new Set(["img_a@3"]), free: { ...host("h1").free, vcpus: 7 } });
    const d = scheduleInstance([host("h2"), loaded], request());
    expect(d.host).toBe("h1");
    expect(reasonsOf(d, "h2")?.[0]).toMatch(/^lost to h1 \(score [\d.]+ vs [\d.]+\): h1 has img_a@3 cached/);
    // A cache of another version of the image is no cache.
    const older = { ...loaded, cached: new Set(["img_a@2"]) };
    expect(scheduleInstance([host("h2"), older], request()).host).toBe("h2");
  });

  it("prefers the least loaded host otherwise", () => {
    const d = scheduleInstance(
      [
        host("h1", { free: { ...host("h1").free, vcpus: 2 } }),
        host("h2", { free: { ...host("h2").free, memoryMb: 1024 } }),
        host("h3", { free: { ...host("h3").free, vcpus: 6 } }),
      ],
      request({ vmGroupId: undefined }),
    );
    expect(outcomes(d)).toEqual([
      ["h3", "chosen"],
      ["h1", "eligible"],
      ["h2", "eligible"],
    ]);
    expect(reasonsOf(d, "h3")).toContain("6 of 8 vCPUs and 16384 of 16384 MiB free (+0.875)");
    expect(reasonsOf(d, "h1")?.[0]).toMatch(/h3 is less loaded$/);
    expect(d.candidates[0]?.score).toBeGreaterThan(d.candidates[1]?.score ?? Infinity);
  });

  it("spreads a group over hosts without spread_hosts, even against the cache", () => {
    // One host failing should not take two of the group when another host could hold one.
    const holding = host("h1", {
      cached: new Set(["img_a@3"]),
      placed: [{ instanceId: "inst_z", vmGroupId: "vmg_1" }],
    });
    const d = scheduleInstance([holding, host("h2")], request());
    expect(d.host).toBe("h2");
    expect(reasonsOf(d, "h1")?.[0]).toMatch(/h2 has fewer instances of group vmg_1 \(0 vs 1\)$/);
    // Without spread_hosts a host of the group is still usable when it is the only one.
    expect(scheduleInstance([holding], request()).host).toBe("h1");
  });

  it("breaks ties by name and says so", () => {
    const d = scheduleInstance([host("h2"), host("h1")], request());
    expect(d.host).toBe("h1");
    expect(reasonsOf(d, "h1")?.[0]).toMatch(/ties with h2, first by name$/);
    expect(reasonsOf(d, "h2")?.[0]).toMatch(/tie broken by name$/);
  });
});

describe("networks", () => {
  it("puts a new instance on a network on a host that attaches guests, even over spread", () => {
    const networked = host("h2", { networks: true, placed: [{ instanceId: "inst_x", vmGroupId: "vmg_1" }] });
    const d = scheduleInstance([host("h1"), networked], request({ network: "preferred" }));
    expect(d.host).toBe("h2");
    expect(reasonsOf(d, "h1")?.[0]).toMatch(/h2 attaches guests to networks, this host does not$/);
    expect(reasonsOf(d, "h1")).toContain("attaches no guests to networks: the guest would run isolated (+0)");
  });

  it("still places a new instance where no host attaches guests (it runs isolated)", () => {
    expect(scheduleInstance([host("h1")], request({ network: "preferred" })).host).toBe("h1");
  });

  it("refuses a host without networking to an instance that keeps its address", () => {
    const d = scheduleInstance(
      [host("h1"), host("h2", { networks: true })],
      request({ network: "required" }),
    );
    expect(d.host).toBe("h2");
    expect(reasonsOf(d, "h1")).toEqual([
      "attaches no guests to networks (its agent has no --guest-network-underlay), and the instance keeps its address",
    ]);
    const none = scheduleInstance([host("h1")], request({ network: "required" }));
    expect(none.refusal).toMatch(/^no host can run inst_a: h1: attaches no guests to networks/);
  });

  it("scores nothing for networking when no network is asked", () => {
    const d = scheduleInstance([host("h1"), host("h2", { networks: true })], request());
    expect(d.host).toBe("h1");
    expect(reasonsOf(d, "h2")?.[0]).toMatch(/tie broken by name$/);
  });
});

describe("scheduleInstances", () => {
  it("with spread_hosts places 3 on 3 hosts and refuses the 4th on every host", () => {
    const hosts = [host("h1"), host("h2"), host("h3")];
    const decisions = scheduleInstances(hosts, group(4, { spreadHosts: true }));
    expect(new Set(decisions.slice(0, 3).map((d) => d.host))).toEqual(new Set(["h1", "h2", "h3"]));
    const fourth = decisions[3];
    expect(fourth?.host).toBeNull();
    for (const [i, name] of ["h1", "h2", "h3"].entries()) {
      expect(reasonsOf(fourth as HostDecision, name)).toEqual([
        `anti-affinity: already holds inst_${i + 1} of group vmg_1 (spread_hosts)`,
      ]);
    }
    expect(fourth?.refusal).toMatch(
      /^no host can run inst_4: h1: anti-affinity.*; h2: .*; h3: anti-affinity/,
    );
  });

  it("fits 4 × 1 vCPU on 3 hosts of 2 vCPUs, spread first", () => {
    const decisions = scheduleInstances([small("h1", 2), small("h2", 2), small("h3", 2)], group(4));
    expect(decisions.map((d) => d.host)).toEqual(["h1", "h2", "h3", "h1"]);
  });

  it("refuses the 7th of 7 × 1 vCPU on 3 hosts of 2 vCPUs, naming each host", () => {
    const decisions = scheduleInstances([small("h1", 2), small("h2", 2), small("h3", 2)], group(7));
    expect(decisions.slice(0, 6).every((d) => d.host !== null)).toBe(true);
    expect(decisions[6]?.refusal).toBe(
      "no host can run inst_7: h1: 0 of 2 vCPUs free (needs 1); h2: 0 of 2 vCPUs free (needs 1); h3: 0 of 2 vCPUs free (needs 1)",
    );
  });

  it("claims disk once per version and host, and leaves the caller's hosts alone", () => {
    const tight = host("h1", { free: { ...host("h1").free, diskBytes: 100 * MiB } });
    const hosts = [tight];
    // 64 MiB fits once in 100 MiB; the second instance finds the version cached and needs no disk.
    const same = scheduleInstances(hosts, group(2));
    expect(same.map((d) => d.host)).toEqual(["h1", "h1"]);
    const other = scheduleInstances(hosts, [
      request(),
      request({ instanceId: "inst_b", image: { ...request().image, imageId: "img_b" } }),
    ]);
    expect(other[1]?.refusal).toBe(
      "no host can run inst_b: h1: 36 MiB of 100 GiB disk free (needs 64 MiB for img_b@3, not cached)",
    );
    expect(tight.free.diskBytes).toBe(100 * MiB);
    expect(tight.cached.size).toBe(0);
    expect(tight.placed).toEqual([]);
  });

  it("never chooses a down host, whatever it offers", () => {
    const down = host("h0", {
      state: "down",
      cached: new Set(["img_a@3"]),
      capacity: { vcpus: 64, memoryMb: 262_144, diskBytes: GiB ** 2 },
      free: { vcpus: 64, memoryMb: 262_144, diskBytes: GiB ** 2 },
    });
    const decisions = scheduleInstances([down, small("h1", 2)], group(3));
    expect(decisions.map((d) => d.host)).toEqual(["h1", "h1", null]);
    expect(decisions.every((d) => reasonsOf(d, "h0")?.[0] === "down")).toBe(true);
  });

  it("is deterministic: the hosts' order does not matter", () => {
    const hosts = [small("h3", 4), host("h1", { cached: new Set(["img_a@3"]) }), small("h2", 2), host("h4")];
    const once = scheduleInstances(hosts, group(9));
    expect(scheduleInstances([...hosts].reverse(), group(9))).toEqual(once);
    expect(scheduleInstances(hosts, group(9))).toEqual(once);
  });
});
