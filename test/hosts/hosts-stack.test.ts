// A datacenter of three hosts, with real processes and real guests: a manager started with
// --host-agents places every instance on one of three host agents (each offering 2 vCPUs), and
// each agent boots its guests from image versions it fetched from the manager's store.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readInstanceRecord } from "../../regional-manager/compute/instance-record.ts";
import { type Stack, startStack } from "../support/stack.ts";
import {
  createGroup,
  createGuestImage,
  expectSucceeded,
  listInstances,
  uploadGuestVersion,
  waitForOperation,
} from "../support/vm-groups.ts";

let stack: Stack;
const REGION = "us-east";
const DC = "us-east-a";
const HOSTS = ["host-1", "host-2", "host-3"];

beforeAll(async () => {
  stack = await startStack({
    name: "hosts",
    regions: [REGION],
    hostsPerRegion: 3,
    hostArgs: () => ["--vcpus", "2", "--memory-mb", "2048"],
    // The control plane learns a host's capacity from the manager's heartbeat; a host silent
    // for 6 s is down (its agent then long-polls 2 s at a time).
    env: { GLOBALVM_HEARTBEAT_INTERVAL_MS: "1000", GLOBALVM_HOST_DOWN_AFTER_MS: "6000" },
  });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const answer = await stack.call("GET", `/v1/datacenters/${DC}/hosts`, stack.adminToken);
    if (
      answer.status === 200 &&
      answer.body.items.filter((h: { state: string }) => h.state === "up").length === 3
    )
      return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`the three hosts did not come up\n${stack.logs()}`);
}, 180_000);

afterAll(() => stack?.stop());

interface HostedInstance {
  id: string;
  name: string;
  state: string;
  host: string | null;
}

async function instancesOf(groupId: string): Promise<HostedInstance[]> {
  return (await listInstances(stack, groupId)) as unknown as HostedInstance[];
}

/** What each agent logged fetching image versions: chunk bytes per host. */
function fetchedBytes(): Record<string, number> {
  const bytes: Record<string, number> = {};
  for (const host of HOSTS) {
    bytes[host] = 0;
    const lines = readFileSync(join(stack.logsDir, `${REGION}-${host}.log`), "utf8").split("\n");
    for (const line of lines) {
      const match = /fetched \S+ for \S+: (\d+) chunk bytes/.exec(line);
      if (match) bytes[host] += Number(match[1]);
    }
  }
  return bytes;
}

/** The QEMU pid an agent's record names for the instance, if the agent has one. */
function guestPid(host: string, instanceId: string): number | undefined {
  const dir = join(stack.dir, `${DC}-${host}`, "compute", "instances", instanceId);
  if (!existsSync(join(dir, "instance.json"))) return undefined;
  return readInstanceRecord(dir).pid ?? undefined;
}

function isRunning(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Live guests of `instanceId` on every host: exactly one for an instance that runs. */
function liveGuests(instanceId: string): string[] {
  return HOSTS.filter((host) => isRunning(guestPid(host, instanceId)));
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms\n${stack.logs()}`);
}

async function deleteGroup(groupId: string) {
  const removal = await stack.call("DELETE", `/v1/vm-groups/${groupId}`, stack.projectToken);
  expect(removal.status).toBe(202);
  await expectSucceeded(stack, removal.body.id, 180_000);
}

describe("a datacenter of three host agents", () => {
  let imageId: string;

  it("spreads a group with spread_hosts over three hosts, each fetching the image once", async () => {
    imageId = await createGuestImage(stack, "guest", REGION);
    const group = await createGroup(stack, {
      name: "spread",
      image: imageId,
      region: REGION,
      size: 3,
      spread_hosts: true,
      machine: { vcpus: 1, memory_mb: 160 },
    });
    await expectSucceeded(stack, group.operationId, 400_000);
    const instances = await instancesOf(group.groupId);
    expect(instances.map((i) => i.state)).toEqual(["ready", "ready", "ready"]);
    expect(new Set(instances.map((i) => i.host))).toEqual(new Set(HOSTS));

    const hosts = await stack.call("GET", `/v1/datacenters/${DC}/hosts`, stack.projectToken);
    expect(hosts.status).toBe(200);
    for (const host of hosts.body.items) {
      expect(host).toMatchObject({ state: "up", instance_count: 1, cached_versions: 1 });
    }
    // Each host holds the whole version once, fetched from the manager's store.
    const image = await stack.call("GET", `/v1/images/${imageId}`, stack.projectToken);
    const size = image.body.size ?? image.body.versions?.[0]?.size;
    const bytes = fetchedBytes();
    console.log(`version of ${size} bytes: chunk bytes fetched per host ${JSON.stringify(bytes)}`);
    for (const host of HOSTS) {
      expect(bytes[host], `${host} fetched the version`).toBeGreaterThan(0);
      if (typeof size === "number") expect(bytes[host]).toBeLessThanOrEqual(size);
    }
    await deleteGroup(group.groupId);
  }, 600_000);

  it("fits four 1-vCPU instances on hosts of 2 vCPUs, and refuses one that no host can hold with every host's reason", async () => {
    const before = fetchedBytes();
    const group = await createGroup(stack, {
      name: "pack",
      image: imageId,
      region: REGION,
      size: 4,
      machine: { vcpus: 1, memory_mb: 160 },
    });
    await expectSucceeded(stack, group.operationId, 600_000);
    const instances = await instancesOf(group.groupId);
    expect(instances.map((i) => i.state)).toEqual(["ready", "ready", "ready", "ready"]);
    const perHost = new Map<string, number>();
    for (const i of instances) perHost.set(i.host as string, (perHost.get(i.host as string) ?? 0) + 1);
    expect([...perHost.values()].every((n) => n <= 2)).toBe(true);
    // The version is in every host's cache already: nothing was fetched again.
    expect(fetchedBytes()).toEqual(before);

    // Two vCPUs are free in the datacenter, one per host on two hosts: no host holds 2.
    const big = await createGroup(stack, {
      name: "big",
      image: imageId,
      region: REGION,
      size: 1,
      machine: { vcpus: 2, memory_mb: 160 },
    });
    const failed = await waitForOperation(stack, big.operationId, 180_000);
    expect(failed.state).toBe("failed");
    const said = JSON.stringify(failed.error);
    for (const host of HOSTS) expect(said).toContain(host);
    expect(said).toMatch(/vCPUs free \(needs 2\)/);
    await deleteGroup(big.groupId);
    await deleteGroup(group.groupId);
  }, 900_000);

  it("moves only what is new of a second version to each host", async () => {
    await uploadGuestVersion(stack, imageId, 2, "second version");
    const before = fetchedBytes();
    const group = await createGroup(stack, {
      name: "next",
      image: imageId,
      image_version: 2,
      region: REGION,
      size: 3,
      spread_hosts: true,
      machine: { vcpus: 1, memory_mb: 160 },
    });
    await expectSucceeded(stack, group.operationId, 400_000);
    const after = fetchedBytes();
    const first = before[HOSTS[0] as string] as number;
    console.log(
      `second version: chunk bytes fetched per host ${JSON.stringify(after)} (before: ${JSON.stringify(before)})`,
    );
    for (const host of HOSTS) {
      const moved = (after[host] as number) - (before[host] as number);
      expect(moved, `${host} fetched the second version's new chunks`).toBeGreaterThan(0);
      // The second version differs from the first by a few bytes at its end: a chunk or two.
      expect(moved).toBeLessThan(first * 0.1);
    }
    await deleteGroup(group.groupId);
  }, 600_000);

  it("heals: a crashed guest is recreated where it is, a dead host's instance elsewhere, and the host's stale guest goes when it returns", async () => {
    const group = await createGroup(stack, {
      name: "heal",
      image: imageId,
      region: REGION,
      size: 2,
      spread_hosts: true,
      machine: { vcpus: 1, memory_mb: 160 },
    });
    await expectSucceeded(stack, group.operationId, 400_000);
    const [first, second] = await instancesOf(group.groupId);
    if (!first?.host || !second?.host) throw new Error("both instances have a host");

    // The first guest's QEMU dies: recreated on the same host, back to ready.
    const crashed = guestPid(first.host, first.id) as number;
    process.kill(crashed, "SIGKILL");
    const healedAt = Date.now();
    await until(
      "the crashed guest's recreation",
      async () => {
        const now = (await instancesOf(group.groupId)).find((i) => i.id === first.id);
        const pid = guestPid(first.host as string, first.id);
        return now?.state === "ready" && pid !== crashed && isRunning(pid) ? now : undefined;
      },
      180_000,
    );
    console.log(`crashed guest ready again after ${Date.now() - healedAt} ms`);

    // The second instance's agent is killed: its guest keeps running, unmanaged; the manager
    // calls the host down and recreates the instance on the host the group does not use yet.
    const lostHost = second.host;
    const stale = guestPid(lostHost, second.id) as number;
    await stack.kill(`${REGION}/${lostHost}`);
    const killedAt = Date.now();
    const moved = await until(
      "the lost host's instance to be recreated elsewhere",
      async () => {
        const now = (await instancesOf(group.groupId)).find((i) => i.id === second.id);
        return now?.state === "ready" && now.host !== lostHost ? now : undefined;
      },
      180_000,
    );
    console.log(`instance of the killed host ready on ${moved.host} after ${Date.now() - killedAt} ms`);
    expect(moved.name).toBe(second.name);
    expect(moved.host).not.toBe(first.host);
    expect(isRunning(stale)).toBe(true);

    // The host comes back: its stale guest is removed, and each instance runs exactly once.
    await stack.restart(`${REGION}/${lostHost}`);
    await until("the stale guest's removal", async () => (isRunning(stale) ? undefined : true), 60_000);
    expect(liveGuests(first.id)).toEqual([first.host]);
    expect(liveGuests(second.id)).toEqual([moved.host]);
    // The group's operations say what was repaired, where and why.
    const repairs = (
      await stack.call("GET", `/v1/operations?target_id=${group.groupId}`, stack.projectToken)
    ).body.items
      .filter((o: { kind: string }) => o.kind === "repair-instance")
      .map((o: { result: Record<string, string> }) => [o.result.name, o.result.host, o.result.reason])
      .sort();
    expect(repairs).toEqual([
      [first.name, first.host, `recreated on host ${first.host}: its guest failed`],
      [second.name, moved.host, `recreated on host ${moved.host}: host ${lostHost} stopped syncing`],
    ]);
    const hosts = await stack.call("GET", `/v1/datacenters/${DC}/hosts`, stack.projectToken);
    expect(hosts.body.items.map((h: { name: string; state: string }) => [h.name, h.state])).toEqual(
      HOSTS.map((h) => [h, "up"]),
    );
    await deleteGroup(group.groupId);
  }, 900_000);
});
