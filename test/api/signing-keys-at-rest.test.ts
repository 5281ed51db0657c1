// The decisions behind globalvm's secrets, without a server: secret strength, private data
// dirs, the signing-key timeline of a rotation, and key wrapping.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { keyTimeline, RETIRED_KEY_VERIFY_SECONDS } from "../../api/signing.ts";
import {
  resolveKeyEncryptionKey,
  SIGNING_KEY_SECRET_FILE,
  unwrapPrivateJwk,
  wrapPrivateJwk,
} from "../../api/signing-key-wrap.ts";
import { preparePrivateDir, unsafeDirReason } from "../../common/private-dir.ts";
import { weakSecretReason } from "../../common/secret-strength.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "globalvm-secrets-"));
  dirs.push(dir);
  return dir;
}

describe("secret strength", () => {
  it.each([
    ["short", "Zx8#kP2m", "characters long"],
    ["the old test token", "test-admin-token-0123456789", "characters long"],
    ["a sequence", "orchestrator-admin-token-0123456789", "pattern '012345'"],
    ["a repeated letter", "k7Qz-aaaaaaaa-Lm3x-Vb9w-Pq2r-Tn8y-Hd", "pattern 'aaaaaa'"],
    ["a descending run", "k7Qz-zyxwvu-Lm3x-Vb9w-Pq2r-Tn8y-Hd", "pattern 'zyxwvu'"],
    ["a repeated unit", "Password12!Password12!Password12!", "'Password12!' repeated"],
    ["words", "correct horse battery staple words", "bits of entropy"],
    ["few symbols", "0110100110010110100101100110100110010110", "bits of entropy"],
  ])("refuses %s", (_, secret, reason) => {
    expect(weakSecretReason(secret)).toContain(reason);
  });

  it("accepts what openssl rand -base64 32 and -hex 32 make, and generated tokens", () => {
    for (let i = 0; i < 1000; i++) {
      expect(weakSecretReason(randomBytes(32).toString("base64"))).toBeUndefined();
      expect(weakSecretReason(`gvm_${randomBytes(32).toString("base64url")}`)).toBeUndefined();
    }
    expect(
      weakSecretReason("3f9c1e7a5b2d8f04c6e1a9b7d3f5c2e8a1b4d7f0c3e6a9b2d5f8c1e4a7b0d3f6"),
    ).toBeUndefined();
  });
});

describe("private data dirs", () => {
  it("refuses a dir other users can write to, or another user owns, and says how to fix it", () => {
    expect(unsafeDirReason("/d", { mode: 0o40775, uid: 1000 }, 1000)).toBe(
      "data dir /d is writable by other users (mode 0775): run chmod 700 /d, or use another dir",
    );
    expect(unsafeDirReason("/d", { mode: 0o40702, uid: 1000 }, 1000)).toContain("chmod 700 /d");
    expect(unsafeDirReason("/d", { mode: 0o40700, uid: 0 }, 1000)).toContain("owned by uid 0");
    expect(unsafeDirReason("/d", { mode: 0o40755, uid: 1000 }, 1000)).toBeUndefined();
  });

  it("creates a missing dir 0700 and later files 0600 whatever the umask", () => {
    const previous = process.umask(0o022);
    try {
      const dir = join(tempDir(), "fresh", "data");
      preparePrivateDir(dir);
      writeFileSync(join(dir, "file"), "x");
      mkdirSync(join(dir, "sub"));
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(join(dir, "file")).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, "sub")).mode & 0o777).toBe(0o700);
    } finally {
      process.umask(previous);
    }
  });

  it("tightens a dir that is only too readable, refuses a group-writable one", () => {
    const readable = tempDir();
    chmodSync(readable, 0o755);
    preparePrivateDir(readable);
    expect(statSync(readable).mode & 0o777).toBe(0o700);

    const writable = tempDir();
    chmodSync(writable, 0o770);
    expect(() => preparePrivateDir(writable)).toThrow(`data dir ${writable} is writable by other users`);
    expect(statSync(writable).mode & 0o777).toBe(0o770);
  });
});

describe("the signing keys' timeline", () => {
  const row = (kid: string, signsFrom: number) => ({
    kid,
    algorithm: "ES256",
    publicJwk: { kid },
    wrappedPrivateJwk: "",
    signsFrom: new Date(signsFrom),
    createdAt: new Date(signsFrom),
  });
  const grace = RETIRED_KEY_VERIFY_SECONDS * 1000;
  const kids = (timeline: ReturnType<typeof keyTimeline>) => ({
    signing: timeline.signing?.kid,
    published: timeline.published.map((p) => p.row.kid),
    expired: timeline.expired.map((r) => r.kid),
  });

  it("the newest started key signs; the one it replaced verifies until its tokens expire, then goes", () => {
    const rows = [row("a", 0), row("b", 1000)];
    expect(kids(keyTimeline(rows, new Date(500)))).toEqual({
      signing: "a",
      published: ["a", "b"],
      expired: [],
    });
    expect(kids(keyTimeline(rows, new Date(1000 + grace - 1)))).toEqual({
      signing: "b",
      published: ["a", "b"],
      expired: [],
    });
    expect(keyTimeline(rows, new Date(2000)).published[0]?.verifiesUntil).toEqual(new Date(1000 + grace));
    expect(kids(keyTimeline(rows, new Date(1000 + grace)))).toEqual({
      signing: "b",
      published: ["b"],
      expired: ["a"],
    });
  });

  it("the longest token lifetime (transfer tokens, 15 min) and a minute of clock skew bound the grace", () => {
    expect(RETIRED_KEY_VERIFY_SECONDS).toBe(16 * 60);
  });
});

describe("key wrapping", () => {
  const jwk = { kty: "EC", crv: "P-256", x: "x", y: "y", d: "the-private-part" };

  it("round-trips, binds the kid, and names the variable when the secret is wrong", () => {
    const kek = resolveKeyEncryptionKey({ secret: randomBytes(32).toString("base64") });
    const wrapped = wrapPrivateJwk(kek, "key_1", jwk);
    expect(wrapped).not.toContain("the-private-part");
    expect(unwrapPrivateJwk(kek, "key_1", wrapped)).toEqual(jwk);
    expect(() => unwrapPrivateJwk(kek, "key_2", wrapped)).toThrow("wrapped with another secret");
    const other = resolveKeyEncryptionKey({ secret: randomBytes(32).toString("base64") });
    expect(() => unwrapPrivateJwk(other, "key_1", wrapped)).toThrow(
      /signing key key_1 in the catalog was wrapped with another secret than GLOBALVM_SIGNING_KEY_SECRET: set GLOBALVM_SIGNING_KEY_SECRET/,
    );
  });

  it("refuses a weak GLOBALVM_SIGNING_KEY_SECRET, saying how to make one", () => {
    expect(() => resolveKeyEncryptionKey({ secret: "signing-secret-123456789" })).toThrow(
      /GLOBALVM_SIGNING_KEY_SECRET is too weak: .*openssl rand -base64 32/,
    );
  });

  it("without the variable, keeps a secret file 0600 in the data dir, the same on every start", () => {
    const previous = process.umask(0o022);
    try {
      const dir = tempDir();
      const first = resolveKeyEncryptionKey({ dataDir: dir });
      expect(statSync(join(dir, SIGNING_KEY_SECRET_FILE)).mode & 0o777).toBe(0o600);
      expect(resolveKeyEncryptionKey({ dataDir: dir }).key).toEqual(first.key);
    } finally {
      process.umask(previous);
    }
  });
});
