// The control plane's token secrets: rotating the signing key (admin only; old tokens keep
// verifying, new ones carry the new kid), private keys stored only wrapped, and idempotent
// replays that never hand back a bearer token that outlived its purpose.
import { sql } from "drizzle-orm";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { idempotencyKeys, signingKeys } from "../../api/catalog/schema.ts";
import { createServices } from "../../api/services.ts";
import { SigningKeyring } from "../../api/signing.ts";
import { resolveKeyEncryptionKey, unwrapPrivateJwk } from "../../api/signing-key-wrap.ts";
import { createTestApi, type TestApi } from "../support/api.ts";
import { CATALOG_KINDS, openTestCatalog } from "../support/catalogs.ts";
import { strongSecret } from "../support/secrets.ts";

const capacity = { vcpus: 8, memory_mb: 16_384, disk_bytes: 100e9 };
const digest = `sha256:${"ab".repeat(32)}`;

describe.each(CATALOG_KINDS)("token secrets (%s)", (kind) => {
  let api: TestApi;
  let acme: Awaited<ReturnType<TestApi["createProject"]>>;
  let manager: string;
  beforeAll(async () => {
    api = await createTestApi(kind);
    await api.expectStatus(201, "POST", "/v1/regions", { body: { name: "eu-west" } });
    acme = await api.createProject("acme");
    manager = (
      await api.expectStatus(201, "POST", "/v1/manager-credentials", {
        body: { region: "eu-west", datacenter: "eu-west-a" },
      })
    ).secret;
    await api.expectStatus(200, "PUT", "/v1/datacenters/eu-west-a", {
      token: manager,
      body: { region: "eu-west", manager_url: "http://127.0.0.1:9001", capacity },
    });
  });
  afterAll(() => api.close());

  const verify = async (token: string) => {
    const jwks = (await api.call("GET", "/.well-known/jwks.json", { token: null })).body;
    return (await jwtVerify(token, createLocalJWKSet(jwks))).payload;
  };
  const kidOf = (token: string) => decodeProtectedHeader(token).kid;
  const uploadToken = async (name: string) =>
    (
      await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        body: { name, origin_region: "eu-west" },
      })
    ).upload.token as string;

  describe("rotation", () => {
    it("is for admins only: 401 without a token, 403 for a project token or a manager credential", async () => {
      const anonymous = await api.call("POST", "/v1/signing-keys", { token: null, body: {} });
      expect([anonymous.status, anonymous.body.code]).toEqual([401, "unauthenticated"]);
      for (const token of [acme.token, manager]) {
        const refused = await api.call("POST", "/v1/signing-keys", { token, body: {} });
        expect([refused.status, refused.body.code]).toEqual([403, "forbidden"]);
      }
      const invalid = await api.call("POST", "/v1/signing-keys", { body: { signs_after_seconds: -1 } });
      expect(invalid.status).toBe(400);
      expect(invalid.body.errors[0].path).toBe("signs_after_seconds");
    });

    it("a new key signs at once; tokens of the old one keep verifying, the old key stays published", async () => {
      const before = await uploadToken("before-rotation");
      const oldKid = kidOf(before);
      const rotated = await api.expectStatus(201, "POST", "/v1/signing-keys", { body: {} });
      expect(rotated.kid).not.toBe(oldKid);
      expect(rotated.previous.kid).toBe(oldKid);
      expect(Date.parse(rotated.previous.verifies_until) - Date.parse(rotated.signs_from)).toBe(16 * 60_000);
      expect(rotated.public_jwk).not.toHaveProperty("d");

      const after = await uploadToken("after-rotation");
      expect(kidOf(after)).toBe(rotated.kid);
      expect(await verify(before)).toMatchObject({ action: "upload" });
      expect(await verify(after)).toMatchObject({ action: "upload" });
      const jwks = (await api.call("GET", "/.well-known/jwks.json", { token: null })).body;
      expect(jwks.keys.map((k: { kid: string }) => k.kid).sort()).toEqual([oldKid, rotated.kid].sort());
    });

    it("a key with signs_after_seconds is published at once and signs only later", async () => {
      const current = kidOf(await uploadToken("before-staged"));
      const staged = await api.expectStatus(201, "POST", "/v1/signing-keys", {
        body: { signs_after_seconds: 600 },
      });
      const jwks = (await api.call("GET", "/.well-known/jwks.json", { token: null })).body;
      expect(jwks.keys.map((k: { kid: string }) => k.kid)).toContain(staged.kid);
      expect(kidOf(await uploadToken("while-staged"))).toBe(current);
    });
  });

  describe("idempotent replay of an image creation", () => {
    it("stores no token, hands a fresh one for the same upload, and none once the image moved on", async () => {
      const headers = { "idempotency-key": `create-${kind}` };
      const body = { name: "replayed", origin_region: "eu-west" };
      const first = await api.expectStatus(201, "POST", "/v1/images", { token: acme.token, headers, body });
      expect(first.upload.version).toBe(1);

      const stored = await api.services.db.select().from(idempotencyKeys);
      expect(JSON.stringify(stored)).not.toContain(first.upload.token);
      expect(JSON.stringify(stored.map((row) => row.body))).not.toContain('"token"');

      // Tokens carry iat/exp in seconds: let the fresh one differ from the first.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const replay = await api.expectStatus(201, "POST", "/v1/images", { token: acme.token, headers, body });
      expect(replay.id).toBe(first.id);
      expect(replay.upload).toMatchObject({ version: 1, datacenter: "eu-west-a" });
      expect(replay.upload.token).not.toBe(first.upload.token);
      expect(await verify(replay.upload.token)).toMatchObject({ imageId: first.id, version: 1 });

      await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${first.id}/versions/1`, {
        token: manager,
        body: { state: "available", local_id: "l1", digest, size: 4096 },
      });
      const afterCommit = await api.expectStatus(201, "POST", "/v1/images", {
        token: acme.token,
        headers,
        body,
      });
      expect(afterCommit.id).toBe(first.id);
      expect(afterCommit.upload).toBeNull();
    });
  });
});

describe("signing keys on a shared Postgres", () => {
  it("a key one control plane rotates in is published by the other at once, and signs there within seconds", async () => {
    const catalog = await openTestCatalog("postgres");
    try {
      const kek = resolveKeyEncryptionKey({ secret: strongSecret() });
      const first = await SigningKeyring.open(catalog.db, kek);
      const second = await SigningKeyring.open(catalog.db, kek);
      const before = (await second.current()).kid;
      const { key } = await first.rotate();
      expect(key.kid).not.toBe(before);
      expect((await second.jwks()).keys.map((k) => k.kid)).toEqual(expect.arrayContaining([before, key.kid]));
      const deadline = Date.now() + 10_000;
      while ((await second.current()).kid !== key.kid) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    } finally {
      await catalog.close();
    }
  }, 30_000);

  it("the Postgres table holds public keys and ciphertext, never a private key's d", async () => {
    const catalog = await openTestCatalog("postgres");
    try {
      const kek = resolveKeyEncryptionKey({ secret: strongSecret() });
      const services = await createServices(catalog, kek);
      await services.signingKeys.rotate();
      const rows = await catalog.db.select().from(signingKeys);
      expect(rows).toHaveLength(2);
      const table = await catalog.db.execute<{ row: string }>(sql`select s::text as row from signing_keys s`);
      const text = JSON.stringify(table);
      for (const row of rows) {
        const d = unwrapPrivateJwk(kek, row.kid, row.wrappedPrivateJwk).d as string;
        expect(d).toMatch(/^[A-Za-z0-9_-]{43}$/);
        expect(text).not.toContain(d);
        expect(text).not.toContain(Buffer.from(d, "base64url").toString("hex"));
      }
      // Another control plane with a different secret refuses to start, naming the variable.
      const wrong = resolveKeyEncryptionKey({ secret: strongSecret() });
      await expect(SigningKeyring.open(catalog.db, wrong)).rejects.toThrow(
        /was wrapped with another secret than GLOBALVM_SIGNING_KEY_SECRET: set GLOBALVM_SIGNING_KEY_SECRET/,
      );
    } finally {
      await catalog.close();
    }
  });
});
