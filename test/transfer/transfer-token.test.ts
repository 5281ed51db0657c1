import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import {
  createTransferTokenVerifier,
  signTransferToken,
  TRANSFER_TOKEN_AUDIENCE,
  type TransferClaims,
} from "../../common/tokens/transfer-token.ts";

const claims: TransferClaims = { imageId: "img-a", version: 3, datacenter: "eu-west-a", action: "read" };
const expected = { imageId: "img-a", version: 3, action: "read" as const };

describe("transfer tokens", async () => {
  const ed = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const ec = await generateKeyPair("ES256");
  const other = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const jwks = {
    keys: [
      { ...(await exportJWK(ed.publicKey)), kid: "ed", alg: "EdDSA" },
      { ...(await exportJWK(ec.publicKey)), kid: "ec", alg: "ES256" },
    ],
  };
  const verifier = createTransferTokenVerifier({ keys: { jwks }, datacenter: "eu-west-a" });

  it("grants the action on the image version in the datacenter it names, with EdDSA and ES256", async () => {
    const edToken = await signTransferToken(ed.privateKey, claims, { keyId: "ed" });
    const ecToken = await signTransferToken(ec.privateKey, claims, { keyId: "ec" });
    await expect(verifier.verify(edToken, expected)).resolves.toEqual(claims);
    await expect(verifier.verify(ecToken, expected)).resolves.toEqual(claims);
  });

  it("takes a single public key as the key source", async () => {
    const single = createTransferTokenVerifier({
      keys: { publicKey: ed.publicKey },
      datacenter: "eu-west-a",
    });
    await expect(single.verify(await signTransferToken(ed.privateKey, claims), expected)).resolves.toEqual(
      claims,
    );
  });

  it("refuses a missing token", async () => {
    await expect(verifier.verify(undefined, expected)).rejects.toMatchObject({ code: "TOKEN_MISSING" });
    await expect(verifier.verify("", expected)).rejects.toMatchObject({ code: "TOKEN_MISSING" });
  });

  it("refuses a token for another image or version", async () => {
    const token = await signTransferToken(ed.privateKey, claims, { keyId: "ed" });
    await expect(verifier.verify(token, { ...expected, imageId: "img-b" })).rejects.toMatchObject({
      code: "TOKEN_WRONG_IMAGE",
    });
    await expect(verifier.verify(token, { ...expected, version: 4 })).rejects.toMatchObject({
      code: "TOKEN_WRONG_IMAGE",
    });
  });

  it("refuses a token for another datacenter", async () => {
    const token = await signTransferToken(
      ed.privateKey,
      { ...claims, datacenter: "us-east-a" },
      { keyId: "ed" },
    );
    await expect(verifier.verify(token, expected)).rejects.toMatchObject({ code: "TOKEN_WRONG_DATACENTER" });
  });

  it("refuses a token for another action", async () => {
    const token = await signTransferToken(ed.privateKey, { ...claims, action: "upload" }, { keyId: "ed" });
    await expect(verifier.verify(token, expected)).rejects.toMatchObject({ code: "TOKEN_WRONG_ACTION" });
  });

  it("carries the project of an upload, and refuses an upload token that names none", async () => {
    const upload = { ...claims, action: "upload" as const };
    const uploadExpected = { ...expected, action: "upload" as const };
    const scoped = await signTransferToken(ed.privateKey, { ...upload, projectId: "prj_a" }, { keyId: "ed" });
    await expect(verifier.verify(scoped, uploadExpected)).resolves.toEqual({ ...upload, projectId: "prj_a" });
    const old = await signTransferToken(ed.privateKey, upload, { keyId: "ed" });
    await expect(verifier.verify(old, uploadExpected)).rejects.toMatchObject({ code: "TOKEN_INVALID" });
  });

  it("refuses an expired token", async () => {
    const token = await signTransferToken(ed.privateKey, claims, { keyId: "ed", lifetimeSeconds: -120 });
    await expect(verifier.verify(token, expected)).rejects.toMatchObject({ code: "TOKEN_EXPIRED" });
  });

  it("refuses a token signed by a key the control plane does not publish, and garbage", async () => {
    const token = await signTransferToken(other.privateKey, claims, { keyId: "ed" });
    await expect(verifier.verify(token, expected)).rejects.toMatchObject({ code: "TOKEN_INVALID" });
    await expect(verifier.verify("a.b.c", expected)).rejects.toMatchObject({ code: "TOKEN_INVALID" });
  });

  it("refuses a token without expiry or without its scope claims", async () => {
    const noExpiry = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: "EdDSA", kid: "ed" })
      .setAudience(TRANSFER_TOKEN_AUDIENCE)
      .sign(ed.privateKey);
    await expect(verifier.verify(noExpiry, expected)).rejects.toMatchObject({ code: "TOKEN_INVALID" });
    const noScope = await new SignJWT({ imageId: "img-a" })
      .setProtectedHeader({ alg: "EdDSA", kid: "ed" })
      .setAudience(TRANSFER_TOKEN_AUDIENCE)
      .setExpirationTime("5m")
      .sign(ed.privateKey);
    await expect(verifier.verify(noScope, expected)).rejects.toMatchObject({ code: "TOKEN_INVALID" });
  });
});
