import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  buildInstanceDocument,
  etagOf,
  type InstanceIdentity,
  metadataPathSegments,
  parseGuestAttributePath,
  renderNode,
  resolveNode,
} from "../../regional-manager/metadata/document.ts";
import { type GuestAttributeWrite, MetadataService } from "../../regional-manager/metadata/index.ts";
import { answersImmediately, parseMetadataQuery } from "../../regional-manager/metadata/request.ts";

function identity(instanceId: string): InstanceIdentity {
  return {
    instanceId,
    name: `web-${instanceId}`,
    vmGroup: "web",
    region: "eu-west",
    datacenter: "eu-west-a",
    image: "img_1",
  };
}

describe("metadata document", () => {
  const document = buildInstanceDocument(
    identity("ins_a"),
    { role: "db", peer: "10.0.0.2" },
    { "globalvm/ready": "true" },
  );

  it("serves identity, attributes and guest attributes at GCE paths", () => {
    expect(resolveNode(document, ["instance", "id"])).toBe("ins_a");
    expect(resolveNode(document, ["instance", "zone"])).toBe("eu-west-a");
    expect(resolveNode(document, ["instance", "attributes", "role"])).toBe("db");
    expect(resolveNode(document, ["instance", "guest-attributes", "globalvm", "ready"])).toBe("true");
    expect(resolveNode(document, ["instance", "attributes", "missing"])).toBeUndefined();
    expect(resolveNode(document, ["instance", "id", "deeper"])).toBeUndefined();
    expect(resolveNode(document, ["instance", "toString"])).toBeUndefined();
  });

  it("serves a private interface under network-interfaces/0/, and none without one", () => {
    expect(resolveNode(document, ["instance", "network-interfaces"])).toBeUndefined();
    const nic = {
      ip: "10.30.0.2",
      mac: "02:00:00:00:00:01",
      subnetmask: "255.255.0.0",
      mtu: "1450",
      network: "net_1",
    };
    const withNic = buildInstanceDocument({ ...identity("ins_n"), networkInterfaces: [nic] }, {}, {});
    expect(resolveNode(withNic, ["instance", "network-interfaces", "0", "ip"])).toBe("10.30.0.2");
    expect(resolveNode(withNic, ["instance", "network-interfaces", "0", "subnetmask"])).toBe("255.255.0.0");
    expect(resolveNode(withNic, ["instance", "network-interfaces", "0", "mac"])).toBe("02:00:00:00:00:01");
  });

  it("renders leaves as text, directories as listings, subtrees as JSON or key-value lines", () => {
    const attributes = resolveNode(document, ["instance", "attributes"]);
    if (attributes === undefined) throw new Error("attributes missing");
    expect(renderNode("db", { recursive: false, alt: "text" }).body).toBe("db");
    expect(renderNode(attributes, { recursive: false, alt: "text" }).body).toBe("peer\nrole\n");
    expect(JSON.parse(renderNode(attributes, { recursive: true, alt: "json" }).body)).toEqual({
      role: "db",
      peer: "10.0.0.2",
    });
    expect(renderNode(attributes, { recursive: true, alt: "text" }).body).toBe("peer 10.0.0.2\nrole db\n");
    const instance = resolveNode(document, ["instance"]);
    if (instance === undefined) throw new Error("instance missing");
    expect(renderNode(instance, { recursive: false, alt: "text" }).body).toContain("attributes/\n");
  });

  it("derives the ETag from content only", () => {
    expect(etagOf({ a: "1" })).toBe(etagOf({ a: "1" }));
    expect(etagOf({ a: "1" })).not.toBe(etagOf({ a: "2" }));
    expect(etagOf(undefined)).not.toBe(etagOf(""));
  });

  it("splits request paths and guest attribute paths", () => {
    expect(metadataPathSegments("/computeMetadata/v1/instance/attributes/")).toEqual({
      segments: ["instance", "attributes"],
      directory: true,
    });
    expect(metadataPathSegments("/computeMetadata/v1/instance/id")?.directory).toBe(false);
    expect(metadataPathSegments("/latest/meta-data/")).toBeUndefined();
    expect(parseGuestAttributePath("globalvm/ready")).toEqual({ namespace: "globalvm", key: "ready" });
    expect(parseGuestAttributePath("ready")).toBeUndefined();
    expect(parseGuestAttributePath("a/../b")).toBeUndefined();
  });
});

describe("metadata query and long-poll decision", () => {
  const parse = (query: string) => parseMetadataQuery(new URLSearchParams(query), 60_000);

  it("parses wait_for_change, last_etag and timeout_sec, capping the timeout", () => {
    const parsed = parse("wait_for_change=true&last_etag=abc&timeout_sec=5");
    expect(parsed).toEqual({
      ok: true,
      value: {
        render: { recursive: false, alt: "text" },
        wait: { waitForChange: true, lastEtag: "abc", timeoutMs: 5_000 },
      },
    });
    const capped = parse("wait_for_change=true&timeout_sec=3600");
    expect(capped.ok && capped.value.wait.timeoutMs).toBe(60_000);
    const recursive = parse("recursive=true");
    expect(recursive.ok && recursive.value.render.alt).toBe("json");
  });

  it("refuses malformed parameters with the parameter's name", () => {
    expect(parse("timeout_sec=0")).toEqual({ ok: false, error: expect.stringContaining("timeout_sec") });
    expect(parse("timeout_sec=abc")).toEqual({ ok: false, error: expect.stringContaining("timeout_sec") });
    expect(parse("wait_for_change=maybe")).toEqual({
      ok: false,
      error: expect.stringContaining("wait_for_change"),
    });
    expect(parse("alt=xml")).toEqual({ ok: false, error: expect.stringContaining("alt") });
  });

  it("answers at once unless waiting on content that still matches", () => {
    const wait = (lastEtag?: string) => ({ waitForChange: true, lastEtag, timeoutMs: 1_000 });
    expect(answersImmediately({ waitForChange: false, lastEtag: undefined, timeoutMs: 0 }, "e1")).toBe(true);
    expect(answersImmediately(wait(), "e1")).toBe(false);
    expect(answersImmediately(wait("e1"), "e1")).toBe(false);
    expect(answersImmediately(wait("e0"), "e1")).toBe(true);
  });
});

describe("MetadataService over HTTP", () => {
  let service: MetadataService | undefined;
  afterEach(async () => {
    await service?.close();
    service = undefined;
  });

  async function get(
    port: number | undefined,
    path: string,
    headers: Record<string, string> = { "Metadata-Flavor": "Google" },
  ) {
    const response = await fetch(`http://127.0.0.1:${port}/computeMetadata/v1/${path}`, {
      headers,
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, etag: response.headers.get("etag"), body: await response.text() };
  }

  it("serves each instance its own document on its own port", async () => {
    service = new MetadataService();
    const a = await service.registerInstance(identity("ins_a"), { role: "a" });
    const b = await service.registerInstance(identity("ins_b"), { role: "b" });
    expect(a.port).not.toBe(b.port);
    expect((await get(a.port, "instance/id")).body).toBe("ins_a");
    expect((await get(b.port, "instance/id")).body).toBe("ins_b");
    expect((await get(b.port, "instance/attributes/role")).body).toBe("b");
    expect(JSON.parse((await get(a.port, "instance/attributes/?recursive=true")).body)).toEqual({
      role: "a",
    });
    expect((await get(a.port, "instance/attributes/nope")).status).toBe(404);
    expect((await get(a.port, "instance/id", {})).status).toBe(403);
    expect(
      (await get(a.port, "instance/id", { "Metadata-Flavor": "Google", "X-Forwarded-For": "1.2.3.4" }))
        .status,
    ).toBe(403);
    expect((await get(a.port, "instance/?timeout_sec=-1&wait_for_change=true")).status).toBe(400);
  });

  it("holds a long-poll until the value changes and then answers with the new ETag", async () => {
    service = new MetadataService();
    const { port } = await service.registerInstance(identity("ins_a"), { peer: "" });
    const first = await get(port, "instance/attributes/peer");
    const started = Date.now();
    const waiting = get(
      port,
      `instance/attributes/peer?wait_for_change=true&last_etag=${first.etag}&timeout_sec=20`,
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    service.updateAttributes("ins_a", { other: "x" }); // a change elsewhere must not wake it
    await new Promise((resolve) => setTimeout(resolve, 200));
    service.updateAttributes("ins_a", { peer: "10.0.0.7" });
    const changed = await waiting;
    const elapsed = Date.now() - started;
    expect(changed.body).toBe("10.0.0.7");
    expect(changed.etag).not.toBe(first.etag);
    expect(elapsed).toBeGreaterThanOrEqual(450);
    expect(elapsed).toBeLessThan(5_000);
  });

  it("answers a stale last_etag at once and a quiet long-poll at its timeout", async () => {
    service = new MetadataService();
    const { port } = await service.registerInstance(identity("ins_a"), { peer: "p1" });
    const stale = await get(
      port,
      "instance/attributes/peer?wait_for_change=true&last_etag=0000&timeout_sec=20",
    );
    expect(stale.body).toBe("p1");
    const started = Date.now();
    const quiet = await get(
      port,
      `instance/attributes/peer?wait_for_change=true&last_etag=${stale.etag}&timeout_sec=1`,
    );
    expect(quiet).toMatchObject({ status: 200, body: "p1", etag: stale.etag });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it("never wakes another instance's long-poll", async () => {
    service = new MetadataService();
    const a = await service.registerInstance(identity("ins_a"), { peer: "" });
    await service.registerInstance(identity("ins_b"), { peer: "" });
    let answered = false;
    const waiting = get(
      a.port,
      "instance/attributes/?recursive=true&wait_for_change=true&timeout_sec=1",
    ).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    service.updateAttributes("ins_b", { peer: "changed" });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(answered).toBe(false);
    expect(JSON.parse((await waiting).body)).toEqual({ peer: "" });
  });

  it("accepts guest attribute PUTs, emits them and serves them back", async () => {
    service = new MetadataService();
    const { port } = await service.registerInstance(identity("ins_a"), {});
    const writes: GuestAttributeWrite[] = [];
    service.on("guest-attribute", (write) => writes.push(write));
    const put = (path: string, body: string) =>
      fetch(`http://127.0.0.1:${port}/computeMetadata/v1/${path}`, {
        method: "PUT",
        headers: { "Metadata-Flavor": "Google" },
        body,
      });
    expect((await put("instance/guest-attributes/globalvm/ready", "true")).status).toBe(200);
    expect(writes).toEqual([{ instanceId: "ins_a", path: "globalvm/ready", value: "true" }]);
    expect((await get(port, "instance/guest-attributes/globalvm/ready")).body).toBe("true");
    expect(service.guestAttributesOf("ins_a")).toEqual({ "globalvm/ready": "true" });
    expect((await put("instance/attributes/role", "x")).status).toBe(405);
    expect((await put("instance/guest-attributes/ready", "x")).status).toBe(405);
    expect(writes).toHaveLength(1);
  });

  it("refuses a guest flooding attributes with 413, by count and by total bytes", async () => {
    service = new MetadataService({ maxGuestAttributes: 10, maxGuestAttributesTotalBytes: 64 * 1024 });
    const { port } = await service.registerInstance(identity("ins_a"), {});
    const put = (key: string, body: string) =>
      fetch(`http://127.0.0.1:${port}/computeMetadata/v1/instance/guest-attributes/flood/${key}`, {
        method: "PUT",
        headers: { "Metadata-Flavor": "Google" },
        body,
      });
    const statuses: number[] = [];
    for (let i = 0; i < 15; i++) statuses.push((await put(`k${i}`, "x")).status);
    expect(statuses).toEqual([...Array(10).fill(200), ...Array(5).fill(413)]);
    const refused = await put("k10", "x");
    expect(await refused.text()).toMatch(/at most 10 guest attributes/);
    // Overwriting one that exists is not one more.
    expect((await put("k0", "y")).status).toBe(200);
    expect((await put("k1", "z".repeat(40_000))).status).toBe(200);
    const big = await put("k2", "z".repeat(40_000));
    expect(big.status).toBe(413);
    expect(await big.text()).toMatch(/at most 65536 bytes in all/);
    expect(Object.keys(service.guestAttributesOf("ins_a"))).toHaveLength(10);
    expect(service.guestAttributesOf("ins_a")["flood/k2"]).toBe("x");
  });

  it("frees the port and ends waits when an instance is unregistered, and can listen on a given port again", async () => {
    service = new MetadataService();
    const { port } = await service.registerInstance(identity("ins_a"), {});
    const waiting = get(port, "instance/id?wait_for_change=true&timeout_sec=30").catch(
      (error: unknown) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    await service.unregisterInstance("ins_a");
    expect(await waiting).toBeInstanceOf(Error);
    const again = await service.registerInstance(
      identity("ins_a"),
      {},
      { port, guestAttributes: { "globalvm/ready": "true" } },
    );
    expect(again.port).toBe(port);
    expect((await get(port, "instance/guest-attributes/globalvm/ready")).body).toBe("true");
    await expect(service.registerInstance(identity("ins_a"), {})).rejects.toThrow(/already registered/);
    expect(() => service?.updateAttributes("ins_zzz", {})).toThrow(/unknown instance ins_zzz/);
  });

  it("listens on a unix socket per instance when given a directory, connectable by QEMU's group only", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gvm-metadata-sockets-"));
    try {
      const group = 12345;
      service = new MetadataService({ socketDir: { path: dir, group } });
      // A socket a killed manager left behind is replaced.
      writeFileSync(join(dir, "ins_a.sock"), "");
      const endpoint = await service.registerInstance(identity("ins_a"), { role: "db" });
      expect(endpoint).toEqual({ socket: join(dir, "ins_a.sock") });
      const stat = statSync(join(dir, "ins_a.sock"));
      expect(stat.isSocket()).toBe(true);
      expect(stat.mode & 0o777).toBe(0o660);
      if (process.getuid?.() === 0) expect(stat.gid).toBe(group);
      const answer = await new Promise<string>((resolve, reject) => {
        const request = httpRequest(
          {
            socketPath: endpoint.socket,
            path: "/computeMetadata/v1/instance/attributes/role",
            headers: { "Metadata-Flavor": "Google" },
          },
          (response) => {
            let body = "";
            response.on("data", (chunk) => (body += chunk));
            response.on("end", () => resolve(body));
          },
        );
        request.on("error", reject);
        request.end();
      });
      expect(answer).toBe("db");
      await service.unregisterInstance("ins_a");
      expect(existsSync(join(dir, "ins_a.sock"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
