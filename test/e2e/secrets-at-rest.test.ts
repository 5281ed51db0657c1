// What a local user or a reader of the catalog could take, tried against real processes
// started under umask 022: every file under the control plane's and the manager's data dirs is
// 0600 and every dir 0700 after real writes; the signing key's private part is in no file of
// the PGlite catalog; a data dir other users can write to is refused. And rotation as a
// manager sees it: a token signed by a key rotated in a moment ago is accepted, so is one
// signed before; a manager pinning keys rejects a key it was not given.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeProtectedHeader, exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openCatalog } from "../../api/catalog/db.ts";
import { signingKeys } from "../../api/catalog/schema.ts";
import { resolveKeyEncryptionKey, unwrapPrivateJwk } from "../../api/signing-key-wrap.ts";
import { uploadImage } from "../../client/upload.ts";
import { createTransferTokenVerifier } from "../../common/tokens/transfer-token.ts";
import { loosePermissions } from "../support/permissions.ts";
import { startCli } from "../support/processes.ts";
import { type Stack, startStack } from "../support/stack.ts";

const scratch = mkdtempSync(join(tmpdir(), "globalvm-secrets-e2e-"));
const imageFile = join(scratch, "small.raw");
let stack: Stack;

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

async function createImage(name: string) {
  const created = await stack.call("POST", "/v1/images", stack.projectToken, {
    name,
    origin_region: "eu-west",
    format: "raw",
  });
  expect(created.status).toBe(201);
  return created.body as { id: string; upload: { url: string; token: string; version: number } };
}

const upload = (image: Awaited<ReturnType<typeof createImage>>) =>
  uploadImage({
    path: imageFile,
    managerUrl: image.upload.url,
    token: image.upload.token,
    imageId: image.id,
    version: image.upload.version,
    format: "raw",
    retries: 0,
  });

beforeAll(async () => {
  // What a default shell gives: without the services' own umask, files would be 0644.
  process.umask(0o022);
  writeFileSync(imageFile, randomBytes(3 << 20));
  stack = await startStack({ name: "secrets", regions: ["eu-west"] });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe("signing-key rotation, as a manager sees it", () => {
  it("accepts a token of a key rotated in a moment ago, and one signed before the rotation", async () => {
    const first = await createImage("first");
    await upload(first);
    const signedBefore = await createImage("signed-before");

    const rotated = await stack.call("POST", "/v1/signing-keys", stack.adminToken, {});
    expect(rotated.status).toBe(201);
    const after = await createImage("signed-after");
    expect(decodeProtectedHeader(after.upload.token).kid).toBe(rotated.body.kid);
    expect(decodeProtectedHeader(signedBefore.upload.token).kid).toBe(rotated.body.previous.kid);

    const started = performance.now();
    await upload(after);
    expect(performance.now() - started).toBeLessThan(5_000);
    await upload(signedBefore);
  }, 60_000);

  it("a verifier pinning a JWKS file rejects a key it was not given, and takes an updated file without restart", async () => {
    const pinned = join(scratch, "control-plane-keys.json");
    const { publicKey } = await generateKeyPair("ES256");
    writeFileSync(pinned, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "other" }] }));
    const verifier = createTransferTokenVerifier({ keys: { jwksFile: pinned }, datacenter: "eu-west-a" });
    const image = await createImage("pinned");
    const claims = { imageId: image.id, version: 1, action: "upload" } as const;
    await expect(verifier.verify(image.upload.token, claims)).rejects.toMatchObject({
      code: "TOKEN_INVALID",
    });

    const served = await (await fetch(`${stack.controlPlane}/.well-known/jwks.json`)).text();
    writeFileSync(pinned, served);
    await expect(verifier.verify(image.upload.token, claims)).resolves.toMatchObject({ imageId: image.id });
  }, 30_000);
});

describe("data dirs under umask 022", () => {
  it("every file is 0600 and every dir 0700 after real writes, and the private key is in no catalog file", async () => {
    const cpDir = join(stack.dir, "cp");
    const managerDir = join(stack.dir, "eu-west-a");
    // The manager stored chunks and images above; the control plane wrote catalog rows.
    expect(filesUnder(join(managerDir, "store")).length).toBeGreaterThan(2);
    await Promise.all(stack.processes.map((p) => p.stop("SIGTERM")));
    expect(loosePermissions(cpDir)).toEqual([]);
    expect(loosePermissions(managerDir)).toEqual([]);

    const catalog = openCatalog({ dataDir: cpDir });
    await catalog.migrate();
    const rows = await catalog.db.select().from(signingKeys);
    await catalog.close();
    expect(rows.length).toBeGreaterThanOrEqual(2);
    const kek = resolveKeyEncryptionKey({ dataDir: cpDir });
    const secrets = rows.flatMap((row) => {
      const d = unwrapPrivateJwk(kek, row.kid, row.wrappedPrivateJwk).d as string;
      return [Buffer.from(d), Buffer.from(d, "base64url")];
    });
    const files = filesUnder(join(cpDir, "catalog"));
    expect(files.length).toBeGreaterThan(100);
    for (const file of files) {
      const bytes = readFileSync(file);
      for (const secret of secrets) expect(bytes.includes(secret), file).toBe(false);
    }
  }, 60_000);

  it.each([
    ["serve control-plane", ["serve", "control-plane", "--port", "0"]],
    [
      "serve regional-manager",
      [
        "serve",
        "regional-manager",
        "--region",
        "r",
        "--datacenter",
        "r-a",
        "--control-plane",
        "http://127.0.0.1:9",
      ],
    ],
  ])("%s refuses a data dir other users can write to, in one line naming the fix", async (_, args) => {
    const dir = mkdtempSync(join(scratch, "shared-"));
    chmodSync(dir, 0o775);
    const refused = startCli([...args, "--data-dir", dir], {
      GLOBALVM_MANAGER_CREDENTIAL: "credential",
      GLOBALVM_ADMIN_TOKEN: undefined,
      DATABASE_URL: undefined,
    });
    expect(await refused.exited()).toBe(1);
    expect(refused.output()).toBe(
      `globalvm: data dir ${dir} is writable by other users (mode 0775): run chmod 700 ${dir}, or use another dir\n`,
    );
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe("operator secrets", () => {
  it("a weak GLOBALVM_ADMIN_TOKEN is refused with how to make one", async () => {
    const dir = mkdtempSync(join(scratch, "weak-"));
    const refused = startCli(["serve", "control-plane", "--port", "0", "--data-dir", dir], {
      GLOBALVM_ADMIN_TOKEN: "admin-token-1234567890-admin-token",
      DATABASE_URL: undefined,
    });
    expect(await refused.exited()).toBe(1);
    expect(refused.output()).toBe(
      "globalvm: GLOBALVM_ADMIN_TOKEN is too weak: it contains the pattern '123456'; generate one with: openssl rand -base64 32\n",
    );
  }, 60_000);

  it("a manager refuses a pinned keys file that is not a public JWKS", async () => {
    const dir = mkdtempSync(join(scratch, "pin-"));
    const keysFile = join(scratch, "private.json");
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    writeFileSync(keysFile, JSON.stringify({ keys: [await exportJWK(privateKey)] }));
    const refused = startCli(
      [
        "serve",
        "regional-manager",
        "--region",
        "r",
        "--datacenter",
        "r-a",
        "--control-plane",
        "http://127.0.0.1:9",
        "--data-dir",
        dir,
        "--control-plane-keys",
        keysFile,
      ],
      { GLOBALVM_MANAGER_CREDENTIAL: "credential" },
    );
    expect(await refused.exited()).toBe(1);
    expect(refused.output()).toBe(
      `globalvm: --control-plane-keys: ${keysFile} must hold public keys only (one has a private "d" parameter)\n`,
    );
  });
});
