import { createPrivateKey, X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createServerCertificate, randomSerial } from "../../provider/server/certificate.ts";
import { objectIdentifier, time, unsignedInteger } from "../../provider/server/der.ts";

describe("DER", () => {
  it("encodes OIDs, minimal integers and times", () => {
    expect(Buffer.from(objectIdentifier("1.2.840.10045.4.3.2")).toString("hex")).toBe("06082a8648ce3d040302");
    expect(Buffer.from(unsignedInteger(Uint8Array.of(0, 0, 0x80))).toString("hex")).toBe("02020080");
    expect(Buffer.from(unsignedInteger(Uint8Array.of(0x7f))).toString("hex")).toBe("02017f");
    expect(Buffer.from(time(new Date(Date.UTC(2026, 10, 22, 4, 5, 6)))).toString()).toContain(
      "261122040506Z",
    );
    expect(Buffer.from(time(new Date(Date.UTC(2051, 0, 1)))).toString()).toContain("20510101000000Z");
  });

  it("never draws a serial that needs a padding byte or starts with zero", () => {
    for (let i = 0; i < 2000; i++) {
      const first = randomSerial()[0] ?? 0;
      expect(first >= 1 && first <= 0x7f).toBe(true);
    }
  });
});

describe("the server certificate", () => {
  const now = new Date();
  const certificate = createServerCertificate(now);
  const x509 = new X509Certificate(certificate.der);

  it("is a self-signed ECDSA P-256 CA valid for localhost and 127.0.0.1", () => {
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(x509.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(x509.ca).toBe(true);
    expect(x509.checkHost("localhost")).toBe("localhost");
    expect(x509.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(x509.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1");
    expect(x509.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
  });

  it("is valid from 30 s ago", () => {
    expect(new Date(x509.validFrom).getTime()).toBe(Math.floor(now.getTime() / 1000) * 1000 - 30_000);
    expect(new Date(x509.validTo).getTime()).toBeGreaterThan(now.getTime());
  });

  it("parses every time (the serial pitfall hits 1 in 256 certificates)", () => {
    for (let i = 0; i < 300; i++)
      expect(() => new X509Certificate(createServerCertificate().der)).not.toThrow();
  });

  it("matches its private key", () => {
    expect(certificate.keyPem).toContain("BEGIN PRIVATE KEY");
    expect(
      new X509Certificate(certificate.certPem).checkPrivateKey(createPrivateKey(certificate.keyPem)),
    ).toBe(true);
  });
});
