// The manager's instance API, called by the control plane with an instance token (one
// datacenter, one instance; see ../auth/instance-token.ts):
//   PUT    /v1/instances/{id}           create and start from a ManagerInstanceSpec (idempotent);
//                                       201 started, 202 waiting for its image version, 200 known
//   GET    /v1/instances/{id}           status
//   POST   /v1/instances/{id}/stop      power off (the overlay stays; PUT starts it again)
//   DELETE /v1/instances/{id}           stop and remove process, sockets, overlay, metadata (204)
//   PUT    /v1/instances/{id}/metadata  replace the metadata the guest long-polls
//   GET    /v1/instances/{id}/console   the last bytes of the serial console
import { Hono } from "hono";
import type { z } from "zod";
import type { InstanceTokenVerifier } from "../../common/tokens/instance-token.ts";
import { ManagerInstanceMetadataSchema, ManagerInstanceSpecSchema } from "../../schemas/manager-instances.ts";
import { ComputeError, type ComputeErrorCode } from "../compute/index.ts";
import { type Problem, problem, problemFromError, problemResponse } from "../transfer/problems.ts";
import type { InstanceManager } from "./instance-manager.ts";

const COMPUTE_STATUS: Record<ComputeErrorCode, [number, string]> = {
  "not-found": [404, "INSTANCE_NOT_FOUND"],
  "invalid-argument": [400, "INVALID_ARGUMENT"],
  "capacity-exceeded": [422, "CAPACITY_EXCEEDED"],
  "failed-precondition": [409, "FAILED_PRECONDITION"],
  internal: [500, "INTERNAL"],
};

function toProblem(error: unknown): Problem {
  if (error instanceof ComputeError) {
    const [status, code] = COMPUTE_STATUS[error.code];
    return problem(status, code, error.message, error.field);
  }
  return problemFromError(error);
}

function validationProblem(error: z.ZodError): Problem {
  const issue = error.issues[0];
  const field = issue?.path.join(".") || undefined;
  return problem(400, "INVALID_ARGUMENT", `${field ?? "body"}: ${issue?.message ?? "invalid"}`, field);
}

async function readJson(request: Request): Promise<unknown> {
  try {
    return await request.json();
  } catch {
    return undefined;
  }
}

export function createInstanceApp(options: {
  instances: InstanceManager;
  verifier: InstanceTokenVerifier;
  log?: (line: string) => void;
}): Hono {
  const { instances, verifier } = options;
  const app = new Hono();

  app.use("/v1/instances/:id/*", async (c, next) =>
    authorise(c.req.param("id"), c.req.header("authorization"), next),
  );
  app.use("/v1/instances/:id", async (c, next) =>
    authorise(c.req.param("id"), c.req.header("authorization"), next),
  );
  async function authorise(id: string, header: string | undefined, next: () => Promise<void>) {
    await verifier.verify(header?.startsWith("Bearer ") ? header.slice(7) : undefined, id);
    await next();
  }

  app.put("/v1/instances/:id", async (c) => {
    const parsed = ManagerInstanceSpecSchema.safeParse(await readJson(c.req.raw));
    if (!parsed.success) return problemResponse(validationProblem(parsed.error));
    if (parsed.data.instance_id !== c.req.param("id")) {
      return problemResponse(
        problem(400, "INVALID_ARGUMENT", "instance_id must be the instance of the path", "instance_id"),
      );
    }
    const { status, created } = await instances.createAndStart(parsed.data);
    return c.json(status, created ? 201 : status.state === "transferring-image" ? 202 : 200);
  });

  app.get("/v1/instances/:id", (c) => c.json(instances.status(c.req.param("id")), 200));

  app.post("/v1/instances/:id/stop", async (c) => c.json(await instances.stop(c.req.param("id")), 200));

  app.delete("/v1/instances/:id", async (c) => {
    await instances.delete(c.req.param("id"));
    return c.body(null, 204);
  });

  app.put("/v1/instances/:id/metadata", async (c) => {
    const parsed = ManagerInstanceMetadataSchema.safeParse(await readJson(c.req.raw));
    if (!parsed.success) return problemResponse(validationProblem(parsed.error));
    return c.json(await instances.setMetadata(c.req.param("id"), parsed.data.metadata), 200);
  });

  app.get("/v1/instances/:id/console", (c) => {
    const tail = Number(c.req.query("tail_bytes") ?? 8192);
    if (!Number.isSafeInteger(tail) || tail < 1 || tail > 1 << 20) {
      return problemResponse(
        problem(400, "INVALID_ARGUMENT", "tail_bytes must be an integer in 1..1048576", "tail_bytes"),
      );
    }
    return c.json({ console: instances.consoleLog(c.req.param("id"), tail) }, 200);
  });

  app.onError((error) => {
    const answer = toProblem(error);
    if (answer.status >= 500) options.log?.(`[WARN] instance API: ${error}`);
    return problemResponse(answer);
  });

  return app;
}
