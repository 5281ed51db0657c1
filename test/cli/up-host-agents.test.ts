// `globalvm up --hosts-per-datacenter 2`: each datacenter's manager places its guests on two host
// agents run by up, each host a network namespace of its own on the guest network; `globalvm
// hosts` lists them, a group spread over hosts lands on both with an address each, its exposed
// port has one endpoint (the manager's host is the datacenter's gateway) that reaches the
// guests on both hosts, and Ctrl-C stops the guests and removes the hosts' namespaces with
// everything else.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readInstanceRecord } from "../../regional-manager/compute/instance-record.ts";
import { get } from "../network/http-get.ts";
import { runCli } from "../support/cli.ts";
import { ensureGuestImage, killRecordedVms } from "../support/compute.ts";
import { SERVE_NAME } from "../support/guest-scripts.ts";
import { type RunningProcess, startCli } from "../support/processes.ts";

const dataDir = mkdtempSync(join(tmpdir(), "globalvm-up-hosts-"));
let up: RunningProcess;
let answer: {
  endpoint: string;
  token: string;
  hosts_per_datacenter: number;
  guest_network: { enabled: boolean; reason?: string; hosts?: { netns: string; host?: string }[] };
};

function isRunning(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  ensureGuestImage();
  up = startCli(
    [
      "up",
      "--json",
      "--regions",
      "eu-west",
      "--port",
      "0",
      "--data-dir",
      dataDir,
      "--hosts-per-datacenter",
      "2",
    ],
    { GLOBALVM_ADMIN_TOKEN: undefined, GLOBALVM_DATA_DIR: undefined, DATABASE_URL: undefined },
  );
  const [line] = await up.waitFor(/^\{.*\}$/m, 150_000);
  answer = JSON.parse(line);
}, 180_000);

afterAll(async () => {
  await up?.stop("SIGTERM");
  await up?.stop("SIGKILL");
  killRecordedVms(dataDir);
  rmSync(dataDir, { recursive: true, force: true });
}, 60_000);

describe("globalvm up with host agents", () => {
  const env = () => ({ GLOBALVM_ENDPOINT: answer.endpoint, GLOBALVM_TOKEN: answer.token });
  let pids: number[] = [];

  it("runs two hosts per datacenter, listed by globalvm hosts, each a namespace on the guest network", async () => {
    expect(answer.hosts_per_datacenter).toBe(2);
    expect(answer.guest_network.enabled, answer.guest_network.reason).toBe(true);
    // The manager's own namespace (the datacenter's gateway), then one per agent.
    expect(answer.guest_network.hosts?.map((h) => h.host)).toEqual([undefined, "host-1", "host-2"]);
    let hosts: { name: string; state: string }[] = [];
    for (let tries = 0; tries < 60 && hosts.filter((h) => h.state === "up").length < 2; tries++) {
      const listed = await runCli(["hosts", "--datacenter", "eu-west-a", "--json"], env());
      expect(listed.code, listed.stderr).toBe(0);
      hosts = JSON.parse(listed.stdout);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(hosts.map((h) => [h.name, h.state])).toEqual([
      ["host-1", "up"],
      ["host-2", "up"],
    ]);
  }, 60_000);

  it("spreads a group over both hosts behind one endpoint; Ctrl-C stops their guests and exits 0", async () => {
    const pushed = await runCli(
      ["image", "push", ensureGuestImage(), "--name", "guest", "--region", "eu-west", "--json"],
      env(),
      120_000,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    const image = JSON.parse(pushed.stdout.trim());
    const created = await fetch(`${answer.endpoint}/v1/vm-groups`, {
      method: "POST",
      headers: { authorization: `Bearer ${answer.token}`, "content-type": "application/json" },
      body: JSON.stringify({
        name: "pair",
        image: image.id,
        region: "eu-west",
        size: 2,
        spread_hosts: true,
        machine: { vcpus: 1, memory_mb: 160 },
        expose: [{ port: 80 }],
        metadata: { "startup-script": SERVE_NAME },
      }),
    });
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };
    const watched = await runCli(["operation", "watch", id], env(), 300_000);
    expect(watched.code, `${watched.stderr}\n${up.output().slice(-3000)}`).toBe(0);
    const shown = await runCli(["vm-group", "show", "pair", "--json"], env());
    const instances = JSON.parse(shown.stdout).instances as {
      id: string;
      state: string;
      host: string;
      address: string | null;
    }[];
    expect(instances.map((i) => i.state)).toEqual(["ready", "ready"]);
    expect(instances.map((i) => i.host).sort()).toEqual(["host-1", "host-2"]);
    for (const instance of instances) expect(instance.address).toMatch(/^10\.\d+\.\d+\.\d+$/);
    expect(new Set(instances.map((i) => i.address)).size).toBe(2);

    // Its port 80 has one endpoint, on the manager's host (relayed to this machine's loopback),
    // judged there by the network's firewall: refused until a rule lets the outside in, then it
    // reaches the guests on both hosts.
    const group = JSON.parse(shown.stdout) as {
      endpoints: { port: number; address: string; datacenter: string }[];
      instances: { name: string }[];
    };
    expect(group.endpoints.map((e) => [e.port, e.datacenter])).toEqual([[80, "eu-west-a"]]);
    const address = group.endpoints[0]?.address as string;
    expect((await get(address)).ok).toBe(false);
    const networks = await fetch(`${answer.endpoint}/v1/networks`, {
      headers: { authorization: `Bearer ${answer.token}` },
    });
    const network = ((await networks.json()) as { items: { id: string; name: string }[] }).items.find(
      (n) => n.name === "default",
    );
    const rule = await fetch(`${answer.endpoint}/v1/networks/${network?.id}/firewall-rules`, {
      method: "POST",
      headers: { authorization: `Bearer ${answer.token}`, "content-type": "application/json" },
      body: JSON.stringify({
        name: "web-from-anywhere",
        action: "allow",
        protocol: "tcp",
        ports: ["80"],
        source: { cidr: "0.0.0.0/0" },
      }),
    });
    expect(rule.status).toBe(201);
    const seen = new Set<string>();
    for (let tries = 0; tries < 200 && seen.size < 2; tries++) {
      const answered = await get(address);
      if (answered.ok) seen.add(answered.text);
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect([...seen].sort(), up.output().slice(-3000)).toEqual(group.instances.map((i) => i.name).sort());

    pids = instances.map(
      (i) =>
        readInstanceRecord(join(dataDir, `eu-west-a-h${i.host.slice(5)}`, "compute", "instances", i.id))
          .pid as number,
    );
    expect(pids.every(isRunning)).toBe(true);

    up.child.kill("SIGINT");
    expect(await up.exited()).toBe(0);
    expect(pids.filter(isRunning)).toEqual([]);
    const namespaces = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
    for (const host of answer.guest_network.hosts ?? []) expect(namespaces).not.toContain(host.netns);
  }, 420_000);
});
