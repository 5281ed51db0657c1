// Flow 5, dependent configuration, with a real control plane, a real manager and real guests:
// a group's metadata takes values from another group's instance. Both groups are created at
// once and boot in parallel; the dependent guest boots without the value and receives it
// through its metadata long-poll as soon as the control plane records it (pushed, not polled).
//
// The runtime value measured is a guest attribute of the referenced instance: the test writes
// it through that instance's own metadata listener, exactly as its guest would (PUT
// instance/guest-attributes/app/endpoint), so the time it appears is known. `address` is not
// used: QEMU user networking gives every guest the same private address, and the manager
// reports none.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "../support/stack.ts";
import {
  consoleOf,
  createGroup,
  createGuestImage,
  expectSucceeded,
  listInstances,
  metadataPortOf,
} from "../support/vm-groups.ts";

let stack: Stack;
const DC = "eu-west-a";
const ENDPOINT = "db-0.internal:5432";

beforeAll(async () => {
  stack = await startStack({ name: "dependent", regions: ["eu-west"] });
}, 120_000);

afterAll(() => stack?.stop());

const metadataUrl = (port: number, path: string) => `http://127.0.0.1:${port}/computeMetadata/v1/${path}`;

/** The instance's attributes as its guest reads them, with the ETag to long-poll from. */
async function guestAttributesOf(port: number, lastEtag?: string) {
  const wait = lastEtag ? `&wait_for_change=true&timeout_sec=30&last_etag=${lastEtag}` : "";
  const response = await fetch(metadataUrl(port, `instance/attributes/?recursive=true${wait}`), {
    headers: { "Metadata-Flavor": "Google" },
    signal: AbortSignal.timeout(40_000),
  });
  expect(response.status).toBe(200);
  return {
    values: (await response.json()) as Record<string, string>,
    etag: response.headers.get("etag") ?? "",
  };
}

describe("dependent configuration", () => {
  it("refuses references to unknown groups and attributes, and cycles, naming the field", async () => {
    // An image never uploaded: the groups exist but their operations start no guest, since
    // only the references are under test here.
    const created = await stack.call("POST", "/v1/images", stack.projectToken, {
      name: "never-uploaded",
      origin_region: "eu-west",
      format: "qcow2",
    });
    expect(created.status).toBe(201);
    const imageId = created.body.id as string;
    const base = { image: imageId, region: "eu-west", size: 1, machine: { vcpus: 1, memory_mb: 160 } };
    const unknownGroup = await stack.call("POST", "/v1/vm-groups", stack.projectToken, {
      ...base,
      name: "orphan",
      metadata_from: { peer: { vm_group: "vmg_00000000000000000000000000", attribute: "id" } },
    });
    expect(unknownGroup.status).toBe(422);
    expect(unknownGroup.body.errors).toEqual([
      expect.objectContaining({ path: "metadata_from.peer.vm_group" }),
    ]);

    const a = await createGroup(stack, { ...base, name: "cycle-a" });
    const unknownAttribute = await stack.call("POST", "/v1/vm-groups", stack.projectToken, {
      ...base,
      name: "typo",
      metadata_from: { peer: { vm_group: a.groupId, attribute: "adress" } },
    });
    expect(unknownAttribute.status).toBe(422);
    expect(unknownAttribute.body).toMatchObject({ code: "unknown_attribute" });
    expect(unknownAttribute.body.errors).toEqual([
      expect.objectContaining({ path: "metadata_from.peer.attribute" }),
    ]);

    const b = await createGroup(stack, {
      ...base,
      name: "cycle-b",
      metadata_from: { peer: { vm_group: a.groupId, attribute: "name" } },
    });
    const cycle = await stack.call("PATCH", `/v1/vm-groups/${a.groupId}`, stack.projectToken, {
      metadata_from: { peer: { vm_group: b.groupId, attribute: "name" } },
    });
    expect(cycle.status).toBe(422);
    expect(cycle.body).toMatchObject({ code: "reference_cycle" });
    expect(cycle.body.errors).toEqual([expect.objectContaining({ path: "metadata_from" })]);
    const self = await stack.call("PATCH", `/v1/vm-groups/${a.groupId}`, stack.projectToken, {
      metadata_from: { me: { vm_group: a.groupId, attribute: "id" } },
    });
    expect(self.status).toBe(422);

    const referenced = await stack.call("DELETE", `/v1/vm-groups/${a.groupId}`, stack.projectToken);
    expect(referenced.status).toBe(409);
    for (const group of [b, a]) {
      const removal = await stack.call("DELETE", `/v1/vm-groups/${group.groupId}`, stack.projectToken);
      expect(removal.status).toBe(202);
      await expectSucceeded(stack, removal.body.id, 120_000);
    }
  }, 600_000);

  it("boots both groups in parallel and pushes the value to the dependent guest within 1 s", async () => {
    const imageId = await createGuestImage(stack, "guest", "eu-west");
    const db = await createGroup(stack, { name: "db", image: imageId, region: "eu-west", size: 1 });
    const app = await createGroup(stack, {
      name: "app",
      image: imageId,
      region: "eu-west",
      size: 1,
      metadata: { role: "app" },
      metadata_from: {
        db_endpoint: { vm_group: db.groupId, instance: 0, attribute: "guest-attributes/app/endpoint" },
        db_ready: { vm_group: db.groupId, instance: 0, attribute: "guest-attributes/globalvm/ready" },
        db_id: { vm_group: db.groupId, instance: 0, attribute: "id" },
      },
    });
    await Promise.all([
      expectSucceeded(stack, db.operationId, 300_000),
      expectSucceeded(stack, app.operationId, 300_000),
    ]);
    const [dbInstance] = await listInstances(stack, db.groupId);
    const [appInstance] = await listInstances(stack, app.groupId);
    if (!dbInstance || !appInstance) throw new Error("both groups have one instance");
    expect([dbInstance.state, appInstance.state]).toEqual(["ready", "ready"]);

    // The app guest is up without the endpoint; the values that exist already reached it.
    const appPort = metadataPortOf(stack, DC, appInstance.id);
    const seen = await guestAttributesOf(appPort);
    expect(seen.values).toMatchObject({ role: "app", db_id: dbInstance.id });
    expect(seen.values.db_endpoint).toBeUndefined();
    // db's real guest wrote globalvm/ready when it came up: pushed to app once recorded.
    const readyDeadline = Date.now() + 30_000;
    let current = seen;
    while (current.values.db_ready !== "true" && Date.now() < readyDeadline) {
      current = await guestAttributesOf(appPort, current.etag);
    }
    expect(current.values.db_ready).toBe("true");

    // Long-poll as the app guest does, then have the db guest publish its endpoint.
    const arrival = (async () => {
      let state = current;
      const deadline = Date.now() + 30_000;
      while (state.values.db_endpoint === undefined && Date.now() < deadline) {
        state = await guestAttributesOf(appPort, state.etag);
      }
      return { values: state.values, at: Date.now() };
    })();
    const dbPort = metadataPortOf(stack, DC, dbInstance.id);
    const publishedAt = Date.now();
    const put = await fetch(metadataUrl(dbPort, "instance/guest-attributes/app/endpoint"), {
      method: "PUT",
      headers: { "Metadata-Flavor": "Google", "content-type": "text/plain" },
      body: ENDPOINT,
    });
    expect(put.status).toBe(200);
    const received = await arrival;
    expect(received.values.db_endpoint).toBe(ENDPOINT);

    const recorded = (await stack.call("GET", `/v1/instances/${dbInstance.id}`, stack.projectToken)).body;
    expect(recorded.guest_attributes["app/endpoint"]).toBe(ENDPOINT);
    const recordedAt = Date.parse(recorded.updated_at);
    const afterRecord = received.at - recordedAt;
    const endToEnd = received.at - publishedAt;
    console.log(
      `dependent value: recorded by the control plane ${recordedAt - publishedAt} ms after the guest wrote it; ` +
        `seen by the dependent's metadata long-poll ${afterRecord} ms after it was recorded (${endToEnd} ms end to end)`,
    );
    expect(recordedAt).toBeGreaterThanOrEqual(publishedAt - 5);
    expect(afterRecord).toBeLessThanOrEqual(1000);

    // The app guest itself saw it through its own long-poll and printed it on its console.
    const consoleDeadline = Date.now() + 30_000;
    while (!consoleOf(stack, DC, appInstance.id).includes(`GLOBALVM-METADATA db_endpoint=${ENDPOINT}`)) {
      if (Date.now() > consoleDeadline) {
        throw new Error(`the app guest never printed the endpoint:\n${consoleOf(stack, DC, appInstance.id)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect((await stack.call("GET", `/v1/vm-groups/${app.groupId}`, stack.projectToken)).body.state).toBe(
      "ready",
    );
  }, 600_000);
});
