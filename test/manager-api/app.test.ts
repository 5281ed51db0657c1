// A regional manager's HTTP surface as a whole (regional-manager/app.ts): its OpenAPI document,
// and that every route it documents refuses a missing or foreign token, and answers bad input,
// with the control plane's problem shape.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import { generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInstanceTokenVerifier, signInstanceToken } from "../../common/tokens/instance-token.ts";
import { createNetworkTokenVerifier, signNetworkToken } from "../../common/tokens/network-token.ts";
import { createTransferTokenVerifier, signTransferToken } from "../../common/tokens/transfer-token.ts";
import { createManagerApp } from "../../regional-manager/app.ts";
import type { InstanceManager } from "../../regional-manager/instances/instance-manager.ts";
import { VersionPulls } from "../../regional-manager/replicas/pulls.ts";
import { ImageStore } from "../../regional-manager/store/image-store.ts";
import { ProblemSchema } from "../../schemas/common.ts";

const DATACENTER = "dc-a";
const INSTANCE = "ins_01jd3k9x4m6q8r2t5v7w9y1z3b";
const NETWORK = "net_01jd3k9x4m6q8r2t5v7w9y1z3b";

/** Every operation a manager serves, by operationId: a new route must be added here, with its token. */
type TokenKind = "transfer" | "instance" | "network";
const OPERATIONS: Record<string, TokenKind> = {
  putUploadManifest: "transfer",
  postUploadChunks: "transfer",
  postUploadProbe: "transfer",
  commitUpload: "transfer",
  putWholeImage: "transfer",
  getPeerManifest: "transfer",
  postPeerChunks: "transfer",
  postPeerPatches: "transfer",
  holdReplica: "transfer",
  dropReplica: "transfer",
  putInstance: "instance",
  getInstance: "instance",
  stopInstance: "instance",
  deleteInstance: "instance",
  getInstanceConsole: "instance",
  putInstanceMetadata: "instance",
  putNetworkFirewall: "network",
};

describe("a regional manager's HTTP app", () => {
  let dir: string;
  let store: ImageStore;
  let app: ReturnType<typeof createManagerApp>;
  let document: any;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "globalvm-manager-api-"));
    store = await ImageStore.open(join(dir, "store"));
    const pair = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    privateKey = pair.privateKey;
    const keys = { publicKey: pair.publicKey };
    const verifier = createTransferTokenVerifier({ keys, datacenter: DATACENTER });
    const reporter = { reportReplica: async () => {} };
    app = createManagerApp({
      datacenter: DATACENTER,
      transfer: { store, verifier, reporter },
      replicas: {
        store,
        verifier,
        reporter,
        pulls: new VersionPulls({
          pull: () => Promise.reject(new Error("no peer in this test")),
          held: (imageId, version) => store.getVersion(imageId, version),
        }),
        instancesBootingFrom: () => [],
      },
      // Never reached by these requests: each is refused before (a call on it would be a 500).
      instances: {
        instances: {} as InstanceManager,
        verifier: createInstanceTokenVerifier({ keys, datacenter: DATACENTER }),
      },
      networks: {
        instances: {} as InstanceManager,
        verifier: createNetworkTokenVerifier({ keys, datacenter: DATACENTER }),
      },
    });
    document = await (await app.request("/openapi.json")).json();
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const operations = () =>
    Object.entries(document.paths as Record<string, Record<string, any>>).flatMap(([path, item]) =>
      Object.entries(item).map(([method, op]) => ({ path, method, op })),
    );
  const urlOf = (path: string) =>
    path
      .replace("{imageId}", "img-a")
      .replace("{version}", "1")
      .replace("{id}", path.startsWith("/v1/networks") ? NETWORK : INSTANCE);
  const tokenFor = (kind: TokenKind, datacenter: string) =>
    kind === "instance"
      ? signInstanceToken(privateKey, { instanceId: INSTANCE, datacenter })
      : kind === "network"
        ? signNetworkToken(privateKey, { networkId: NETWORK, datacenter })
        : signTransferToken(privateKey, {
            imageId: "img-a",
            version: 1,
            datacenter,
            action: "read",
            projectId: "prj_a",
          });

  it("serves valid OpenAPI 3.1 at /openapi.json", async () => {
    const validator = new Validator();
    const result = await validator.validate(document);
    expect(result.errors ?? []).toEqual([]);
    expect(validator.version).toBe("3.1");
  });

  it("documents every operation once, with its token and its problem answers", () => {
    const byId: Record<string, { op: any }> = Object.fromEntries(
      operations().map(({ op, method, path }) => [op.operationId, { op, method, path }]),
    );
    expect(Object.keys(byId).sort()).toEqual(Object.keys(OPERATIONS).sort());
    expect(operations()).toHaveLength(Object.keys(OPERATIONS).length);
    for (const [id, { op }] of Object.entries(byId)) {
      expect(op.security, id).toEqual([{ [`${OPERATIONS[id]}Token`]: [] }]);
      for (const status of ["401", "403"]) {
        expect(op.responses[status]?.content?.["application/problem+json"], `${id} ${status}`).toBeDefined();
      }
    }
    expect(document.components.securitySchemes).toMatchObject({
      transferToken: { type: "http", scheme: "bearer" },
      instanceToken: { type: "http", scheme: "bearer" },
    });
  });

  it("refuses every operation without a token (401) and with a token of another datacenter (403)", async () => {
    for (const { path, method, op } of operations()) {
      const url = urlOf(path);
      const anonymous = await app.request(url, { method: method.toUpperCase() });
      expect(anonymous.status, `${method} ${path}`).toBe(401);
      expect(anonymous.headers.get("content-type")).toBe("application/problem+json");
      expect(ProblemSchema.strict().parse(await anonymous.json())).toMatchObject({ code: "unauthenticated" });

      const foreign = await tokenFor(OPERATIONS[op.operationId] as TokenKind, "dc-b");
      const refused = await app.request(url, {
        method: method.toUpperCase(),
        headers: { authorization: `Bearer ${foreign}` },
      });
      expect(refused.status, `${method} ${path}`).toBe(403);
      expect(await refused.json()).toMatchObject({
        code: "forbidden",
        detail: expect.stringContaining("dc-b"),
      });
    }
  });

  it("names the invalid field as the control plane does", async () => {
    const token = await tokenFor("transfer", DATACENTER);
    const badVersion = await app.request("/v1/transfer/img-a/versions/zero/manifest", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(badVersion.status).toBe(400);
    expect(ProblemSchema.strict().parse(await badVersion.json())).toMatchObject({
      code: "validation_failed",
      errors: [expect.objectContaining({ path: "version" })],
    });

    const instanceToken = await tokenFor("instance", DATACENTER);
    const put = (body: string) =>
      app.request(`/v1/instances/${INSTANCE}`, {
        method: "PUT",
        headers: { authorization: `Bearer ${instanceToken}`, "content-type": "application/json" },
        body,
      });
    const malformed = await put("{not json");
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ code: "malformed_json" });
    const incomplete = await put(JSON.stringify({ instance_id: INSTANCE, vcpus: 0 }));
    expect(incomplete.status).toBe(400);
    const problem = ProblemSchema.strict().parse(await incomplete.json());
    expect(problem.code).toBe("validation_failed");
    expect(problem.errors?.map((e) => e.path)).toContain("vcpus");
  });

  it("answers an unknown route with a problem, and its health without a token", async () => {
    const missing = await app.request("/v1/nothing-here");
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: "route_not_found" });
    expect(await (await app.request("/healthz")).json()).toEqual({ status: "ok", datacenter: DATACENTER });
  });
});
