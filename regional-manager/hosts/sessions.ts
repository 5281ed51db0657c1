// Host sessions: the bearer token a host agent receives when it registers with its manager
// (hosts/app.ts). It authenticates the host's syncs and lets it read image versions from the
// manager's store with the transfer protocol's read routes (manifest and chunks), as a peer
// manager does with a control-plane `read` token. Sessions live in the manager's memory: a
// restarted manager forgets them, and its agents register again.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { ControlPlaneTokenError, type TransferTokenVerifier } from "../../common/tokens/transfer-token.ts";

/** Every host session token starts so: what tells it from a control plane JWT at a glance. */
export const HOST_SESSION_PREFIX = "gvh_";

function hashOf(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

export class HostSessions {
  /** The hash of each host's current token (the tokens themselves are never kept). */
  readonly #hashes = new Map<string, Buffer>();
  /** Host by the hex of its token's hash. */
  readonly #hosts = new Map<string, string>();

  /** A new random bearer token for the host (prefix "gvh_", 32 random bytes base64url), replacing its previous one. */
  issue(host: string): string {
    this.revoke(host);
    const token = HOST_SESSION_PREFIX + randomBytes(32).toString("base64url");
    const hash = hashOf(token);
    this.#hashes.set(host, hash);
    this.#hosts.set(hash.toString("hex"), host);
    return token;
  }

  /**
   * The host a token belongs to, or undefined. The lookup is by the token's SHA-256 (its
   * timing says nothing of how much of a guess matches a real token), and the hash found is
   * compared in constant time.
   */
  hostOf(token: string | undefined): string | undefined {
    if (token === undefined || !token.startsWith(HOST_SESSION_PREFIX)) return undefined;
    const hash = hashOf(token);
    const host = this.#hosts.get(hash.toString("hex"));
    if (host === undefined) return undefined;
    const expected = this.#hashes.get(host);
    return expected !== undefined && timingSafeEqual(expected, hash) ? host : undefined;
  }

  revoke(host: string): void {
    const hash = this.#hashes.get(host);
    if (!hash) return;
    this.#hashes.delete(host);
    this.#hosts.delete(hash.toString("hex"));
  }
}

/**
 * A transfer verifier that also lets a host session read (action "read") any version here;
 * everything else goes to `inner`. A host session is refused for upload, replicate and drop
 * (TOKEN_WRONG_ACTION), and an unknown or revoked one is not authenticated (TOKEN_INVALID),
 * with the error type the inner verifier throws, so the routes answer 403 and 401 alike.
 */
export function withHostReads(
  inner: TransferTokenVerifier,
  sessions: HostSessions,
  datacenter: string,
): TransferTokenVerifier {
  return {
    async verify(token, expected) {
      if (token === undefined || !token.startsWith(HOST_SESSION_PREFIX)) return inner.verify(token, expected);
      const host = sessions.hostOf(token);
      if (host === undefined) {
        throw new ControlPlaneTokenError(
          "TOKEN_INVALID",
          "the host session is unknown or was replaced: register the host again",
        );
      }
      if (expected.action !== "read") {
        throw new ControlPlaneTokenError(
          "TOKEN_WRONG_ACTION",
          `host ${host}'s session may read image versions, not ${expected.action} them`,
        );
      }
      return { imageId: expected.imageId, version: expected.version, datacenter, action: "read" };
    },
  };
}
