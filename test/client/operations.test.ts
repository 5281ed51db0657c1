import { describe, expect, it } from "vitest";
import { ApiError, createApiClient, type Operation } from "../../client/api.ts";
import { followOperation } from "../../client/operations.ts";

function operation(state: Operation["state"], step: string | null = null): Operation {
  return {
    id: "op_0000000000000000000000000a",
    kind: "image.replicate",
    state,
    done: state === "succeeded" || state === "failed" || state === "cancelled",
    progress: { step, bytes_done: 0, bytes_total: null, children: [] },
    error: null,
  } as unknown as Operation;
}

/** A control plane that answers GET /v1/operations/{id} from a script, recording each ask's query. */
function scripted(answers: (Operation | { status: number; body: unknown })[]) {
  const asked: string[] = [];
  const fetch = (async (request: Request) => {
    const url = new URL(request.url);
    asked.push(url.search);
    const next = answers.shift();
    if (!next) throw new Error("asked more often than scripted");
    const [status, body] = "status" in next && "body" in next ? [next.status, next.body] : [200, next];
    return new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": status >= 400 ? "application/problem+json" : "application/json" },
    });
  }) as typeof globalThis.fetch;
  return { api: createApiClient({ endpoint: "http://control-plane.test", token: "t", fetch }), asked };
}

describe("followOperation", () => {
  it("asks at once for an id, then long-polls until the operation is done, reporting each answer", async () => {
    const { api, asked } = scripted([
      operation("running", "pull"),
      operation("running", "verify"),
      operation("succeeded"),
    ]);
    const seen: string[] = [];
    const done = await followOperation(
      api,
      { id: "op_0000000000000000000000000a" },
      {
        onProgress: (current) => seen.push(`${current.state}:${current.progress.step}`),
      },
    );
    expect(done.state).toBe("succeeded");
    expect(seen).toEqual(["running:pull", "running:verify", "succeeded:null"]);
    expect(asked).toEqual(["", "?wait=30s", "?wait=30s"]);
  });

  it("keeps the operation through a transient 5xx", async () => {
    const { api } = scripted([
      { status: 503, body: { title: "unavailable", status: 503 } },
      operation("failed"),
    ]);
    const done = await followOperation(api, operation("running"), { pollWait: "1s" });
    expect(done.state).toBe("failed");
  });

  it("answers with the operation as last seen when the timeout passes", async () => {
    const { api } = scripted([]);
    const running = operation("running");
    expect(await followOperation(api, running, { timeoutMs: 0 })).toBe(running);
  });

  it("throws an ApiError with the status for a problem such as 404", async () => {
    const { api } = scripted([
      { status: 404, body: { title: "not found", status: 404, detail: "no such operation" } },
    ]);
    const error = await followOperation(api, { id: "op_0000000000000000000000000a" }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(404);
    expect((error as ApiError).detail).toContain("no such operation");
  });
});
