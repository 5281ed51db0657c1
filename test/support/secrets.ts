import { randomBytes } from "node:crypto";

/** A secret as an operator should make one (openssl rand -base64 32): passes the strength check. */
export function strongSecret(prefix = ""): string {
  return `${prefix}${randomBytes(32).toString("base64url")}`;
}
