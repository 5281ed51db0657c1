// `globalvm up` without the privileges guest networks need: run as an unprivileged user (no
// CAP_NET_ADMIN, no CAP_SYS_ADMIN), it says so in one line naming what is missing, makes no
// namespace, and still boots guests, isolated: no private address, the metadata link only.
import { execFileSync } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lookUpUser } from "../../regional-manager/compute/qemu/user.ts";
import { runCli } from "../support/cli.ts";
import { ensureGuestImage, killRecordedVms } from "../support/compute.ts";
import { type RunningProcess, startCli } from "../support/processes.ts";

const dataDir = mkdtempSync(join(tmpdir(), "globalvm-up-isolated-"));
let up: RunningProcess;
let answer: {
  endpoint: string;
  token: string;
  guest_network: { enabled: boolean; reason?: string };
};

function namespaces(): string[] {
  return execFileSync("ip", ["netns", "list"], { encoding: "utf8" })
    .split("\n")
    .map((line) => line.split(" ")[0] as string)
    .filter(Boolean);
}

beforeAll(async () => {
  ensureGuestImage();
  const nobody = lookUpUser("nobody");
  chownSync(dataDir, nobody.uid, nobody.gid);
  up = startCli(
    ["up", "--json", "--regions", "eu-west", "--port", "0", "--data-dir", dataDir],
    { GLOBALVM_ADMIN_TOKEN: undefined, GLOBALVM_DATA_DIR: undefined, DATABASE_URL: undefined, HOME: dataDir },
    // An unprivileged user, no capabilities inherited: what a user without sudo has.
    ["setpriv", `--reuid=${nobody.uid}`, `--regid=${nobody.gid}`, "--clear-groups", "--inh-caps=-all", "--"],
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

describe("globalvm up without root", () => {
  it("says in one line that guest networking is off and what it needs, and makes no namespace", () => {
    expect(answer.guest_network.enabled).toBe(false);
    const said = up
      .output()
      .split("\n")
      .filter((l) => l.includes("guest networking is off"));
    expect(said).toEqual([
      "globalvm: guest networking is off: it needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run up as root); guests run isolated, with no private address",
    ]);
    expect(answer.guest_network.reason).toContain("CAP_NET_ADMIN");
    expect(namespaces().filter((n) => n.startsWith("gvup-"))).toEqual([]);
  });

  it("still boots a guest, isolated: ready, with no address", async () => {
    const env = { GLOBALVM_ENDPOINT: answer.endpoint, GLOBALVM_TOKEN: answer.token };
    const pushed = await runCli(
      ["image", "push", ensureGuestImage(), "--name", "guest", "--region", "eu-west", "--json"],
      env,
      120_000,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    const image = JSON.parse(pushed.stdout.trim());
    const created = await fetch(`${answer.endpoint}/v1/vm-groups`, {
      method: "POST",
      headers: { authorization: `Bearer ${answer.token}`, "content-type": "application/json" },
      body: JSON.stringify({
        name: "lonely",
        image: image.id,
        region: "eu-west",
        size: 1,
        machine: { vcpus: 1, memory_mb: 256 },
      }),
    });
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };
    const watched = await runCli(["operation", "watch", id], env, 300_000);
    expect(watched.code, `${watched.stderr}\n${up.output().slice(-3000)}`).toBe(0);
    const shown = await runCli(["vm-group", "show", "lonely", "--json"], env);
    const [instance] = JSON.parse(shown.stdout).instances;
    expect(instance.state).toBe("ready");
    // The catalog gave it an address in its network; no datacenter attached it there.
    expect(instance.network_ip).toMatch(/^10\.128\./);
    expect(instance.address).toBeNull();
  }, 330_000);

  it("Ctrl-C stops it with exit 0", async () => {
    up.child.kill("SIGINT");
    expect(await up.exited()).toBe(0);
  }, 60_000);
});
