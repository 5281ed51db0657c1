// A globalvm stack as users run it, for end-to-end tests: a control plane on an embedded
// catalog and one regional manager per region, each its own process, a project and its token.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killRecordedVms } from "../compute/support.ts";
import { type RunningProcess, startCli } from "./processes.ts";

export interface ApiAnswer {
  status: number;
  body: any;
}

export interface Stack {
  dir: string;
  controlPlane: string;
  adminToken: string;
  projectToken: string;
  processes: RunningProcess[];
  call(
    method: string,
    path: string,
    token: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<ApiAnswer>;
  /** Every process's last output, for failure messages. */
  logs(): string;
  stop(): Promise<void>;
}

export async function startStack(options: { name: string; regions: string[] }): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), `globalvm-${options.name}-`));
  const adminToken = `${options.name}-admin-token-0123456789`;
  const processes: RunningProcess[] = [];
  let controlPlane = "";

  const call: Stack["call"] = async (method, path, token, body, headers = {}) => {
    const response = await fetch(`${controlPlane}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body ? { "content-type": "application/json" } : {}),
        ...headers,
      },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(60_000),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  };

  const expectCreated = (answer: ApiAnswer, what: string) => {
    if (answer.status !== 201) throw new Error(`${what}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  };

  const startManager = async (region: string) => {
    const datacenter = `${region}-a`;
    const credential = expectCreated(
      await call("POST", "/v1/manager-credentials", adminToken, { region, datacenter }),
      `credential for ${datacenter}`,
    );
    const manager = startCli(
      [
        "serve",
        "regional-manager",
        "--region",
        region,
        "--datacenter",
        datacenter,
        "--control-plane",
        controlPlane,
        "--data-dir",
        join(dir, datacenter),
      ],
      { GLOBALVM_MANAGER_CREDENTIAL: credential.secret },
    );
    processes.push(manager);
    await manager.waitFor(/regional manager of \S+ \(\S+\) on (http:\/\/\S+)/, 60_000);
  };

  const cp = startCli(["serve", "control-plane", "--port", "0", "--data-dir", join(dir, "cp")], {
    GLOBALVM_ADMIN_TOKEN: adminToken,
    DATABASE_URL: undefined,
  });
  processes.push(cp);
  controlPlane = (await cp.waitFor(/control plane on (http:\/\/\S+)/, 60_000))[1] as string;
  for (const region of options.regions) {
    expectCreated(await call("POST", "/v1/regions", adminToken, { name: region }), `region ${region}`);
  }
  const project = expectCreated(await call("POST", "/v1/projects", adminToken, { name: "acme" }), "project");
  const projectToken = expectCreated(
    await call("POST", `/v1/projects/${project.id}/tokens`, adminToken, { name: options.name }),
    "project token",
  ).secret as string;
  await Promise.all(options.regions.map(startManager));

  return {
    dir,
    controlPlane,
    adminToken,
    projectToken,
    processes,
    call,
    logs: () => processes.map((p) => p.output().slice(-3000)).join("\n---\n"),
    async stop() {
      await Promise.all(processes.map((p) => p.stop("SIGTERM")));
      await Promise.all(processes.map((p) => p.stop("SIGKILL")));
      // Managers leave their guests running when they stop (they reattach on restart).
      killRecordedVms(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
