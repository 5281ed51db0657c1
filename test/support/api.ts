// An in-process control plane on a real catalog, with helpers that speak to it as clients do.
import { type ServerType, serve } from "@hono/node-server";
import { createApp } from "../../api/app.ts";
import { ensureBootstrapAdminToken } from "../../api/bootstrap.ts";
import { createServices } from "../../api/services.ts";
import { resolveKeyEncryptionKey } from "../../api/signing-key-wrap.ts";
import { type CatalogKind, openTestCatalog } from "./catalogs.ts";
import { strongSecret } from "./secrets.ts";

export const ADMIN_TOKEN = strongSecret("test-admin-");

export interface CallOptions {
  token?: string | null;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
}

export interface TestResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export async function createTestApi(kind: CatalogKind) {
  const catalog = await openTestCatalog(kind);
  await ensureBootstrapAdminToken(catalog.db, ADMIN_TOKEN);
  const services = await createServices(catalog, resolveKeyEncryptionKey({}));
  const app = createApp(services, { log: () => {} });

  async function call<T = any>(
    method: string,
    path: string,
    options: CallOptions = {},
  ): Promise<TestResponse<T>> {
    const token = options.token === undefined ? ADMIN_TOKEN : options.token;
    const headers: Record<string, string> = { ...options.headers };
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let body: string | undefined = options.rawBody;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers["content-type"] ??= "application/json";
    } else if (body !== undefined) {
      headers["content-type"] ??= "application/json";
    }
    const response = await app.request(path, { method, headers, body });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {}
    return { status: response.status, headers: response.headers, body: parsed as T };
  }

  async function expectStatus<T = any>(status: number, method: string, path: string, options?: CallOptions) {
    const response = await call<T>(method, path, options);
    if (response.status !== status) {
      throw new Error(
        `${method} ${path}: expected ${status}, got ${response.status}: ${JSON.stringify(response.body)}`,
      );
    }
    return response.body;
  }

  /** A project with a read/write token and a read-only token. */
  async function createProject(name: string) {
    const project = await expectStatus(201, "POST", "/v1/projects", { body: { name } });
    const writer = await expectStatus(201, "POST", `/v1/projects/${project.id}/tokens`, {
      body: { name: "writer" },
    });
    const reader = await expectStatus(201, "POST", `/v1/projects/${project.id}/tokens`, {
      body: { name: "reader", scopes: ["read"] },
    });
    return { id: project.id as string, token: writer.secret as string, readToken: reader.secret as string };
  }

  async function createRegion(name: string, capacity = { vcpus: 8, memory_mb: 16_384, disk_bytes: 100e9 }) {
    await expectStatus(201, "POST", "/v1/regions", { body: { name } });
    await expectStatus(201, "POST", "/v1/datacenters", {
      body: { name: `${name}-a`, region: name, capacity },
    });
  }

  return {
    app,
    services,
    catalog,
    call,
    expectStatus,
    createProject,
    createRegion,
    close: () => catalog.close(),
  };
}

export type TestApi = Awaited<ReturnType<typeof createTestApi>>;

/** Serves the in-process app on a loopback port, for clients that speak HTTP (the CLI). */
export async function serveOnLoopback(api: TestApi): Promise<{ url: string; close(): Promise<void> }> {
  const server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: api.app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
