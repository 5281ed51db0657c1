// Flow 1 of the orchestrator with real processes and real guests: an image uploaded to
// eu-west, a VM group of 2 created in us-east with one API call, and nothing else: the
// us-east manager pulls the image (only the chunks it lacks), verifies it, boots both
// guests, and the operation ends succeeded with both instances ready. Deleting the group
// removes its instances.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../regional-manager/upload-client.ts";
import { ensureGuestImage, killRecordedVms } from "../compute/support.ts";
import { type RunningProcess, startCli } from "../support/processes.ts";

const ADMIN = "orchestrator-admin-token-0123456789";
const processes: RunningProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), "globalvm-orchestrator-"));
let controlPlane = "";
let token = "";

async function call(
  method: string,
  path: string,
  bearer: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const response = await fetch(`${controlPlane}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${bearer}`,
      ...(body ? { "content-type": "application/json" } : {}),
      ...headers,
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Follows an operation with long-polls; records every step seen and checks bytes never go back. */
async function follow(id: string, timeoutMs: number) {
  const steps: string[] = [];
  let bytes = 0;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { body } = await call("GET", `/v1/operations/${id}?wait=10s`, token);
    if (body.progress.step && steps.at(-1) !== body.progress.step) steps.push(body.progress.step);
    expect(body.progress.bytes_done).toBeGreaterThanOrEqual(bytes);
    bytes = body.progress.bytes_done;
    if (body.done) return { operation: body, steps };
  }
  throw new Error(
    `operation ${id} did not finish:\n${processes.map((p) => p.output().slice(-3000)).join("\n---\n")}`,
  );
}

async function startManager(region: string) {
  const datacenter = `${region}-a`;
  const credential = await call("POST", "/v1/manager-credentials", ADMIN, { region, datacenter });
  const manager = startCli(
    [
      "serve",
      "regional-manager",
      "--region",
      region,
      "--datacenter",
      datacenter,
      "--control-plane",
      controlPlane,
      "--data-dir",
      join(dir, datacenter),
    ],
    { GLOBALVM_MANAGER_CREDENTIAL: credential.body.secret },
  );
  processes.push(manager);
  await manager.waitFor(/regional manager of \S+ \(\S+\) on (http:\/\/\S+)/, 60_000);
}

beforeAll(async () => {
  const cp = startCli(["serve", "control-plane", "--port", "0", "--data-dir", join(dir, "cp")], {
    GLOBALVM_ADMIN_TOKEN: ADMIN,
    DATABASE_URL: undefined,
  });
  processes.push(cp);
  controlPlane = (await cp.waitFor(/control plane on (http:\/\/\S+)/, 60_000))[1] as string;
  for (const region of ["eu-west", "us-east"]) await call("POST", "/v1/regions", ADMIN, { name: region });
  const project = await call("POST", "/v1/projects", ADMIN, { name: "acme" });
  token = (await call("POST", `/v1/projects/${project.body.id}/tokens`, ADMIN, { name: "e2e" })).body.secret;
  await Promise.all([startManager("eu-west"), startManager("us-east")]);
}, 120_000);

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop("SIGTERM")));
  await Promise.all(processes.map((p) => p.stop("SIGKILL")));
  // Managers leave their guests running when they stop (they reattach on restart).
  killRecordedVms(dir);
  rmSync(dir, { recursive: true, force: true });
});

describe("orchestrator, flow 1: on-demand transfer", () => {
  it("starts a group of 2 in a region lacking the image with one call, then deletes it", async () => {
    const guest = ensureGuestImage();
    const image = await call("POST", "/v1/images", token, {
      name: "guest",
      origin_region: "eu-west",
      format: "qcow2",
    });
    expect(image.status).toBe(201);
    await uploadImage({
      path: guest,
      managerUrl: image.body.upload.url,
      token: image.body.upload.token,
      imageId: image.body.id,
      version: 1,
      format: "qcow2",
    });

    const created = await call(
      "POST",
      "/v1/vm-groups",
      token,
      {
        name: "web",
        image: image.body.id,
        region: "us-east",
        size: 2,
        machine: { vcpus: 1, memory_mb: 192 },
      },
      { "idempotency-key": "web-1" },
    );
    expect(created.status).toBe(202);
    const { operation, steps } = await follow(created.body.id, 240_000);
    expect(operation).toMatchObject({ state: "succeeded", result: { datacenter: "us-east-a" } });
    // A poll may miss a short step, but the steps seen come in this order and end done.
    const order = ["placing", "starting", "transferring-image", "waiting-ready", "done"];
    const positions = steps.map((step) => order.indexOf(step));
    expect(positions).not.toContain(-1);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(steps.at(-1)).toBe("done");

    const group = (await call("GET", `/v1/vm-groups/${created.body.target.id}`, token)).body;
    expect(group).toMatchObject({ state: "ready", datacenter: "us-east-a" });
    const members = (await call("GET", `/v1/vm-groups/${group.id}/instances`, token)).body.items;
    expect(members.map((i: any) => [i.name, i.datacenter, i.state])).toEqual([
      ["web-0", "us-east-a", "ready"],
      ["web-1", "us-east-a", "ready"],
    ]);
    expect(members[0].boot_log_tail).toContain(members[0].id);

    const replicas = (await call("GET", `/v1/images/${image.body.id}`, token)).body.replicas;
    expect(replicas.map((r: any) => [r.datacenter, r.state])).toEqual([
      ["eu-west-a", "available"],
      ["us-east-a", "available"],
    ]);
    expect(replicas[0].local_id).not.toBe(replicas[1].local_id);

    // A retry of the same request re-attaches to the same operation: no second group.
    const retry = await call(
      "POST",
      "/v1/vm-groups",
      token,
      {
        name: "web",
        image: image.body.id,
        region: "us-east",
        size: 2,
        machine: { vcpus: 1, memory_mb: 192 },
      },
      { "idempotency-key": "web-1" },
    );
    expect(retry.body.id).toBe(created.body.id);

    const removal = await call("DELETE", `/v1/vm-groups/${group.id}`, token);
    expect(removal.status).toBe(202);
    const removed = await follow(removal.body.id, 60_000);
    expect(removed.operation.state).toBe("succeeded");
    expect((await call("GET", `/v1/vm-groups/${group.id}`, token)).status).toBe(404);
    expect((await call("GET", `/v1/instances/${members[0].id}`, token)).status).toBe(404);
  }, 360_000);
});
