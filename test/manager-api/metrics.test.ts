// A regional manager's /metrics: the text format, who may scrape it (its metrics token, else
// the loopback only, or anyone when opted out), and the transfer families after a real upload,
// a repeated upload (every chunk skipped), a tampered chunk and a peer pull between two
// managers' transfer apps served on loopback.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CatalogDb } from "../../api/catalog/db.ts";
import { ControlPlaneMetrics } from "../../api/metrics.ts";
import { uploadImage } from "../../client/upload.ts";
import { writeRecordHeader } from "../../common/image-format/chunk-records.ts";
import { sha256Hex } from "../../common/image-format/digest.ts";
import { encodeManifest } from "../../common/image-format/manifest.ts";
import { createTransferTokenVerifier, signTransferToken } from "../../common/tokens/transfer-token.ts";
import { createManagerApp } from "../../regional-manager/app.ts";
import { ManagerMetrics, managerMetricsAccessFrom } from "../../regional-manager/metrics.ts";
import { ImageStore } from "../../regional-manager/store/image-store.ts";
import { pullImageVersion } from "../../regional-manager/transfer/pull.ts";
import { parseExposition, samplesOf, sumOf } from "../support/metrics.ts";

const TOKEN = `mt-${randomBytes(24).toString("base64url")}`;
const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

interface Manager {
  store: ImageStore;
  metrics: ManagerMetrics;
  url: string;
  server: ServerType;
}

describe("a regional manager's /metrics", () => {
  let dir: string;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
  let eu: Manager;
  let us: Manager;

  const start = async (datacenter: string, access: { token?: string; public?: boolean }) => {
    const store = await ImageStore.open(join(dir, datacenter));
    const metrics = new ManagerMetrics(datacenter);
    metrics.watch({
      store: () => store.stats(),
      freeBytes: async () => 1e9,
      guests: () => [{ state: "ready" }, { state: "ready" }, { state: "starting" }],
      waitingLongPolls: () => 2,
    });
    const keys = { publicKey: (await keyPair).publicKey };
    const app = createManagerApp({
      datacenter,
      transfer: { store, verifier: createTransferTokenVerifier({ keys, datacenter }) },
      metrics: { metrics, access },
    });
    const server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
    });
    const address = (server as Server).address();
    const port = typeof address === "object" && address ? address.port : 0;
    return { store, metrics, url: `http://127.0.0.1:${port}`, server };
  };
  const keyPair = generateKeyPair("EdDSA", { crv: "Ed25519" });
  const token = (datacenter: string, action: "upload" | "read", version: number) =>
    signTransferToken(privateKey, { imageId: "img-m", version, datacenter, action, projectId: "prj_m" });
  const scrape = async (m: Manager, auth: string | null = TOKEN) => {
    const answer = await fetch(`${m.url}/metrics`, {
      headers: auth === null ? {} : { authorization: `Bearer ${auth}` },
    });
    return { status: answer.status, type: answer.headers.get("content-type"), text: await answer.text() };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "metrics-manager-"));
    privateKey = (await keyPair).privateKey;
    eu = await start("eu-west-a", { token: TOKEN });
    us = await start("us-east-a", {});
  });
  afterAll(async () => {
    for (const m of [eu, us]) {
      await new Promise((resolve) => m?.server.close(resolve));
      await m?.store.close();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers its metrics token only when one is set (401 without, 403 with another)", async () => {
    expect((await scrape(eu, null)).status).toBe(401);
    const wrong = await scrape(eu, `${TOKEN}x`);
    expect(wrong.status).toBe(403);
    expect(JSON.parse(wrong.text)).toMatchObject({ code: "forbidden" });
    const right = await scrape(eu);
    expect(right.status).toBe(200);
    expect(right.type).toBe(CONTENT_TYPE);
  });

  it("answers the loopback without a token, and nobody it cannot place", async () => {
    expect((await scrape(us, null)).status).toBe(200);
    // Outside a Node server (no peer address): refused, as a remote caller would be.
    const app = createManagerApp({
      datacenter: "x-a",
      transfer: {
        store: us.store,
        verifier: createTransferTokenVerifier({
          keys: { publicKey: (await keyPair).publicKey },
          datacenter: "x-a",
        }),
      },
      metrics: { metrics: new ManagerMetrics("x-a"), access: {} },
    });
    expect((await app.request("/metrics")).status).toBe(403);
    const open = createManagerApp({
      datacenter: "x-a",
      transfer: {
        store: us.store,
        verifier: createTransferTokenVerifier({
          keys: { publicKey: (await keyPair).publicKey },
          datacenter: "x-a",
        }),
      },
      metrics: { metrics: new ManagerMetrics("x-a"), access: { public: true } },
    });
    expect((await open.request("/metrics")).status).toBe(200);
    expect(
      managerMetricsAccessFrom({ GLOBALVM_MANAGER_METRICS_TOKEN: " t ", GLOBALVM_METRICS_PUBLIC: "1" }),
    ).toEqual({
      token: "t",
      public: true,
    });
    expect(managerMetricsAccessFrom({})).toEqual({ public: false });
  });

  it("counts an upload's bytes and chunks, a repeat's skipped chunks, a tampered chunk, and a pull both ways", async () => {
    const file = join(dir, "image.raw");
    writeFileSync(file, randomBytes(3 << 20));
    await uploadImage({
      path: file,
      managerUrl: eu.url,
      token: await token("eu-west-a", "upload", 1),
      imageId: "img-m",
      version: 1,
    });
    await uploadImage({
      path: file,
      managerUrl: eu.url,
      token: await token("eu-west-a", "upload", 2),
      imageId: "img-m",
      version: 2,
    });

    // One chunk whose data is not what its digest names.
    const data = randomBytes(4096);
    const digest = sha256Hex(data);
    const manifest = {
      size: data.length,
      digest: sha256Hex(data),
      chunks: [{ digest, length: data.length, zero: false }],
    };
    const upload = await token("eu-west-a", "upload", 3);
    const base = `${eu.url}/v1/uploads/img-m/versions/3`;
    const headers = { authorization: `Bearer ${upload}`, "content-type": "application/octet-stream" };
    expect(
      (
        await fetch(`${base}/manifest`, {
          method: "PUT",
          headers,
          body: new Uint8Array(encodeManifest(manifest)),
        })
      ).status,
    ).toBe(200);
    const record = Buffer.alloc(36 + data.length);
    writeRecordHeader(record, 0, digest, data.length);
    randomBytes(data.length).copy(record, 36);
    expect((await fetch(`${base}/chunks`, { method: "POST", headers, body: record })).status).toBe(422);

    const pulled = await pullImageVersion({
      store: us.store,
      imageId: "img-m",
      version: 1,
      expectedDigest: eu.store.getVersion("img-m", 1)?.digest as string,
      expectedSize: 3 << 20,
      project: "prj_m",
      sources: [{ url: eu.url, token: await token("eu-west-a", "read", 1), datacenter: "eu-west-a" }],
      recorder: us.metrics,
      datacenter: "us-east-a",
    });
    expect(pulled.state).toBe("available");

    const source = parseExposition((await scrape(eu)).text);
    const chunks = sumOf(source, "globalvm_manager_chunks_total", { via: "upload", outcome: "received" });
    expect(chunks).toBeGreaterThan(3);
    // Version 2 is version 1 again: every chunk of it was skipped (the last received is the tampered one).
    expect(sumOf(source, "globalvm_manager_chunks_total", { via: "upload", outcome: "skipped" })).toBe(
      chunks - 1,
    );
    expect(sumOf(source, "globalvm_manager_transfer_bytes_total", { direction: "in", peer: "client" })).toBe(
      (3 << 20) + data.length,
    );
    expect(sumOf(source, "globalvm_manager_chunk_verification_failures_total", { via: "upload" })).toBe(1);
    expect(
      samplesOf(source, "globalvm_manager_transfer_bytes_total", { direction: "out" }).map((s) => [
        s.labels,
        s.value,
      ]),
    ).toEqual([[{ datacenter: "eu-west-a", direction: "out", peer: "us-east-a" }, 3 << 20]]);
    expect(sumOf(source, "globalvm_manager_store_used_bytes")).toBe(3 << 20);
    expect(
      sumOf(source, "globalvm_http_requests_total", {
        route: "/v1/uploads/:imageId/versions/:version/chunks",
        status: "422",
      }),
    ).toBe(1);

    const puller = parseExposition((await scrape(us, null)).text);
    expect(
      sumOf(puller, "globalvm_manager_transfer_bytes_total", { direction: "in", peer: "eu-west-a" }),
    ).toBe(3 << 20);
    expect(sumOf(puller, "globalvm_manager_chunks_total", { via: "pull", outcome: "received" })).toBe(
      chunks - 1,
    );
    expect(sumOf(puller, "globalvm_manager_chunks_total", { via: "pull", outcome: "skipped" })).toBe(0);
    expect(sumOf(puller, "globalvm_manager_guests", { state: "ready" })).toBe(2);
    expect(sumOf(puller, "globalvm_manager_metadata_long_polls_waiting")).toBe(2);
    expect(sumOf(puller, "globalvm_manager_store_free_bytes")).toBe(1e9);
    for (const s of puller.samples) expect(s.labels.datacenter).toBe("us-east-a");
  });

  it("times guest boots from starting to ready, failed or stopped", async () => {
    const metrics = new ManagerMetrics("dc-a");
    const change = (instanceId: string, state: string) =>
      metrics.guestStateChanged({ instanceId, state, previous: undefined });
    change("a", "starting");
    change("a", "running");
    change("a", "ready");
    change("a", "ready"); // a second ready is no second boot
    change("b", "starting");
    change("b", "failed");
    change("c", "ready"); // reattached: its start was not seen
    const m = parseExposition(await metrics.registry.metrics());
    expect(sumOf(m, "globalvm_manager_guest_boots_total", { result: "ready" })).toBe(1);
    expect(sumOf(m, "globalvm_manager_guest_boots_total", { result: "failed" })).toBe(1);
    expect(sumOf(m, "globalvm_manager_guest_boot_duration_seconds_count")).toBe(2);
    expect(m.types.get("globalvm_manager_guest_boot_duration_seconds")).toBe("histogram");
  });

  it("documents every metric of both services in the README's table", () => {
    const readme = readFileSync(join(import.meta.dirname, "../../README.md"), "utf8");
    const manager = new ManagerMetrics("dc-a");
    manager.watch({
      store: () => ({ chunkBytes: 0, chunkCount: 0, imageCount: 0 }),
      freeBytes: async () => 0,
      guests: () => [],
      waitingLongPolls: () => 0,
    });
    const names = [
      ...new ControlPlaneMetrics({} as CatalogDb, () => new Date()).registry.getMetricsAsArray(),
      ...manager.registry.getMetricsAsArray(),
    ].map((metric) => metric.name);
    expect(names.length).toBeGreaterThan(20);
    for (const name of names) expect(readme, name).toContain(`\`${name}\``);
  });
});
