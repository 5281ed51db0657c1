// A one-shot self-signed server certificate for the go-plugin handshake. Terraform pins
// exactly this certificate (it arrives in the handshake line) and verifies it for
// ServerName "localhost", so it needs a SAN; Go also wants CA:TRUE to use it as a root.
// Built on node:crypto with a small DER writer: ~3 ms, versus ~140 ms for the x509
// libraries on npm.

import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import {
  bitString,
  booleanTrue,
  explicit,
  implicitPrimitive,
  objectIdentifier,
  octetString,
  sequence,
  set,
  smallInteger,
  time,
  unsignedInteger,
  utf8String,
} from "./der.ts";

const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extendedKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
};

export interface ServerCertificate {
  der: Uint8Array;
  certPem: string;
  keyPem: string;
}

function extension(oid: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical
    ? sequence(objectIdentifier(oid), booleanTrue(), octetString(value))
    : sequence(objectIdentifier(oid), octetString(value));
}

function toPem(label: string, der: Uint8Array): string {
  const base64 = Buffer.from(der).toString("base64");
  return `-----BEGIN ${label}-----\n${base64.replace(/(.{64})/g, "$1\n").replace(/\n$/, "")}\n-----END ${label}-----\n`;
}

/** A positive serial whose first byte is 0x01–0x7f, so DER needs no padding byte (a 0x00 lead is illegal). */
export function randomSerial(): Uint8Array {
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) % 0x7f) + 1;
  return serial;
}

export function createServerCertificate(now = new Date()): ServerCertificate {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const name = sequence(
    set(sequence(objectIdentifier(OID.organization), utf8String("globalvm"))),
    set(sequence(objectIdentifier(OID.commonName), utf8String("localhost"))),
  );
  const algorithm = sequence(objectIdentifier(OID.ecdsaWithSha256));
  const notBefore = new Date(now.getTime() - 30_000);
  const notAfter = new Date(now.getTime() + 365 * 24 * 3600_000);
  // keyUsage bits: digitalSignature (bit 0) and keyCertSign (bit 5) → 0b1000_0100, 2 unused bits.
  const keyUsage = bitString(Uint8Array.of(0x84), 2);
  const extensions = sequence(
    extension(OID.basicConstraints, true, sequence(booleanTrue())),
    extension(OID.keyUsage, true, keyUsage),
    extension(
      OID.extendedKeyUsage,
      false,
      sequence(objectIdentifier(OID.serverAuth), objectIdentifier(OID.clientAuth)),
    ),
    extension(
      OID.subjectAltName,
      false,
      sequence(
        implicitPrimitive(2, new TextEncoder().encode("localhost")),
        implicitPrimitive(7, Uint8Array.of(127, 0, 0, 1)),
      ),
    ),
  );
  const tbs = sequence(
    explicit(0, smallInteger(2)),
    unsignedInteger(randomSerial()),
    algorithm,
    name,
    sequence(time(notBefore), time(notAfter)),
    name,
    publicKey.export({ type: "spki", format: "der" }),
    explicit(3, extensions),
  );
  const signature = sign("sha256", tbs, privateKey);
  const der = sequence(tbs, algorithm, bitString(signature));
  return {
    der,
    certPem: toPem("CERTIFICATE", der),
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}
