// The manager's API for its host agents. An agent registers with a manager credential of this
// datacenter (checked with the control plane, which issued it) and gets a session token; it
// then syncs with that token: it says what it has and runs, and is answered with what it
// should run, at once when that changed since its last sync, else when it changes or `wait`
// seconds pass (a long poll: a new assignment reaches its host without a polling delay).
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { ProblemError } from "../../common/http/problem.ts";
import { idSchema, NameSchema } from "../../schemas/common.ts";
import {
  HostRegistrationSchema,
  HostSessionSchema,
  type HostSyncAnswer,
  HostSyncAnswerSchema,
  HostSyncSchema,
} from "../../schemas/hosts.ts";
import { type InternalNameAnswer, InternalNameAnswerSchema } from "../../schemas/internal-names.ts";
import { type Log, managerRoutes, problemResponses } from "../http/openapi.ts";
import type { HostRecord, HostRegistry } from "./registry.ts";
import type { HostSessions } from "./sessions.ts";

const HostParams = z.object({
  name: NameSchema.openapi({ param: { name: "name", in: "path" }, example: "host-1" }),
});
const json = <T extends z.ZodTypeAny>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});
const tags = ["hosts"];
const MAX_WAIT_SECONDS = 30;

export const hostRoutes = {
  register: createRoute({
    operationId: "registerHost",
    method: "put",
    path: "/v1/hosts/{name}",
    tags,
    summary: "A host agent registers (or registers again) with its capacity; answered with its session",
    security: [{ managerCredential: [] as string[] }],
    request: {
      params: HostParams,
      body: { required: true, content: { "application/json": { schema: HostRegistrationSchema } } },
    },
    responses: {
      200: json(HostSessionSchema, "Registered: the session to sync with"),
      ...problemResponses(400, 401, 409),
    },
  }),
  sync: createRoute({
    operationId: "syncHost",
    method: "post",
    path: "/v1/hosts/{name}/sync",
    tags,
    summary: "A host says what it has and runs, and is answered with what it should run",
    security: [{ hostSession: [] as string[] }],
    request: {
      params: HostParams,
      query: z.object({
        wait: z.coerce.number().int().min(0).max(MAX_WAIT_SECONDS).default(0).openapi({
          description: "Seconds to hold the answer while the assignments are those of `revision`",
        }),
      }),
      body: { required: true, content: { "application/json": { schema: HostSyncSchema } } },
    },
    responses: {
      200: json(HostSyncAnswerSchema, "The host's assignments"),
      ...problemResponses(400, 401, 403, 404),
    },
  }),
  resolveName: createRoute({
    operationId: "resolveHostGuestName",
    method: "get",
    path: "/v1/hosts/{name}/instances/{instance}/names/{dns_name}",
    tags,
    summary: "A host resolves an internal name for one of its guests (the guest's DNS query)",
    security: [{ hostSession: [] as string[] }],
    request: {
      params: HostParams.extend({
        instance: idSchema("instance").openapi({ param: { name: "instance", in: "path" } }),
        dns_name: z
          .string()
          .min(1)
          .max(253)
          .openapi({
            param: { name: "dns_name", in: "path" },
            example: "web.default.us-east.acme.globalvm.internal",
          }),
      }),
    },
    responses: {
      200: json(InternalNameAnswerSchema, "The name's addresses, as the control plane answers them"),
      ...problemResponses(401, 403, 404, 503),
    },
  }),
};

export interface HostAppOptions {
  registry: HostRegistry;
  sessions: HostSessions;
  /** True when `credential` is a manager credential of this datacenter (the control plane says). */
  verifyCredential(credential: string): Promise<boolean>;
  syncIntervalMs: number;
  downAfterMs: number;
  /** A host's sync came in (the manager's heartbeat and capacity follow its hosts). */
  onSync?: (host: string) => void;
  /**
   * Resolves an internal name for an instance (the manager's cache of the control plane's
   * answers); undefined: no such name. Without it, hosts' guests resolve nothing.
   */
  lookupName?: (instanceId: string, name: string) => Promise<InternalNameAnswer | undefined>;
  /** What a host's answer says of guest networks (tunnel peers, firewalls); undefined: nothing. */
  networksOf?: (record: HostRecord) => HostSyncAnswer["networks"];
  log?: Log;
}

function bearer(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  return match?.[1];
}

export function createHostApp(options: HostAppOptions): OpenAPIHono {
  const app = managerRoutes(options.log);

  app.openapi(hostRoutes.register, async (c) => {
    const { name } = c.req.valid("param");
    const credential = bearer(c.req.header("authorization"));
    if (!credential || !(await options.verifyCredential(credential))) {
      throw new ProblemError(
        401,
        "unauthenticated",
        "A host registers with a manager credential of this datacenter (globalvm datacenter credential).",
      );
    }
    options.registry.register(name, c.req.valid("json"));
    options.log?.(`host ${name} registered`);
    return c.json(
      {
        host: name,
        session_token: options.sessions.issue(name),
        sync_interval_ms: options.syncIntervalMs,
        down_after_ms: options.downAfterMs,
      },
      200,
    );
  });

  app.openapi(hostRoutes.sync, async (c) => {
    const { name } = c.req.valid("param");
    const host = options.sessions.hostOf(bearer(c.req.header("authorization")));
    if (!host)
      throw new ProblemError(401, "unauthenticated", "Sync with the session token the registration gave.");
    if (host !== name)
      throw new ProblemError(403, "forbidden", `This session is host ${host}'s, not ${name}'s.`);
    const body = c.req.valid("json");
    const record = options.registry.get(name);
    if (!record)
      throw new ProblemError(404, "host_not_found", `Host ${name} is not registered: register again.`);
    options.registry.sync(name, body);
    options.onSync?.(name);
    if (body.revision !== undefined) {
      await options.registry.waitForChange(name, body.revision, c.req.valid("query").wait * 1000);
    }
    const networks = options.networksOf?.(record);
    return c.json(
      {
        revision: record.revision,
        assignments: [...record.assignments.values()],
        ...(networks ? { networks } : {}),
      },
      200,
    );
  });

  app.openapi(hostRoutes.resolveName, async (c) => {
    const { name, instance, dns_name } = c.req.valid("param");
    const host = options.sessions.hostOf(bearer(c.req.header("authorization")));
    if (!host)
      throw new ProblemError(401, "unauthenticated", "Resolve with the session token the registration gave.");
    if (host !== name)
      throw new ProblemError(403, "forbidden", `This session is host ${host}'s, not ${name}'s.`);
    // A host asks only for its own guests: the name is resolved in that instance's project.
    if (!options.registry.get(name)?.assignments.has(instance))
      throw new ProblemError(
        404,
        "instance_not_found",
        `Instance ${instance} is not assigned to host ${name}.`,
      );
    let answer: InternalNameAnswer | undefined;
    try {
      answer = await options.lookupName?.(instance, dns_name);
    } catch (error) {
      throw new ProblemError(
        503,
        "lookup_unavailable",
        `The control plane did not answer for ${dns_name}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (!answer)
      throw new ProblemError(404, "name_not_found", `No internal name ${dns_name} for ${instance}.`);
    return c.json(answer, 200);
  });

  app.openAPIRegistry.registerComponent("securitySchemes", "managerCredential", {
    type: "http",
    scheme: "bearer",
    description: "A manager credential of this datacenter, issued by the control plane.",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "hostSession", {
    type: "http",
    scheme: "bearer",
    description: "The session token a host's registration was answered with.",
  });
  return app;
}
