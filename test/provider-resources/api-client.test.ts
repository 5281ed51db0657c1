// The provider's API client is generated from the served OpenAPI document: it must be current.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { checkReachable, fieldPath } from "../../client/api.ts";
import { API_CLIENT_FILE, generateApiClientSource } from "../../scripts/generate-api-client.ts";

describe("the generated API client", () => {
  it("matches the document the control plane serves (run npm run api-client:generate)", async () => {
    const fresh = await generateApiClientSource();
    expect(fresh).toContain('"/v1/vm-groups": {');
    expect(readFileSync(API_CLIENT_FILE, "utf8") === fresh, "client/api.gen.ts is stale").toBe(true);
  }, 60_000);

  it("turns API field paths into attribute paths", () => {
    expect(fieldPath("machine.vcpus")).toEqual(["machine", "vcpus"]);
    expect(fieldPath("placement.regions[1]")).toEqual(["placement", "regions", 1]);
  });

  it("reports an unreachable endpoint as one diagnostic", async () => {
    const refused = (async () => {
      throw new TypeError("fetch failed", { cause: { code: "ECONNREFUSED" } });
    }) as typeof fetch;
    await expect(checkReachable("http://cp.test", { fetch: refused })).rejects.toMatchObject({
      message: "Cannot reach the globalvm control plane",
      detail: expect.stringContaining("No answer from http://cp.test (ECONNREFUSED)"),
    });
  });
});
