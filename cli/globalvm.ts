#!/usr/bin/env node
// The globalvm command. Runs under Node 24 (type stripping), which the npm scripts provide.
import { parseArgs } from "node:util";
import { type CatalogLocation, openCatalog } from "../api/catalog/db.ts";
import { startControlPlane } from "../api/server.ts";
import { startRegionalManager } from "../regional-manager/service.ts";

const HELP = `globalvm — a global computing interface for virtual machines

Usage:
  globalvm serve control-plane [--port N] [--host H] [--data-dir DIR]
  globalvm serve regional-manager --region R --datacenter D --control-plane URL
                                  --data-dir DIR [--port N] [--host H]
  globalvm migrate [--data-dir DIR]
  globalvm help

Environment:
  DATABASE_URL           a Postgres URL for the catalog; without it an embedded PGlite
                         database is kept under --data-dir (default ./.globalvm)
  GLOBALVM_ADMIN_TOKEN   the bootstrap admin token (at least 16 characters); without it one
                         is generated on the first start and printed once
  GLOBALVM_MANAGER_CREDENTIAL
                         a regional manager's credential (POST /v1/manager-credentials)
`;

class UsageError extends Error {}

function catalogLocation(dataDir: string): CatalogLocation {
  const databaseUrl = process.env.DATABASE_URL;
  return databaseUrl ? { databaseUrl } : { dataDir };
}

function parsePort(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new UsageError(`--port must be 0–65535, not ${text}`);
  return port;
}

async function serveControlPlane(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      "data-dir": { type: "string", default: ".globalvm" },
    },
  });
  const port = parsePort(values.port ?? process.env.PORT, 8080);
  const running = await startControlPlane({
    catalog: catalogLocation(values["data-dir"]),
    port,
    host: values.host,
    adminToken: process.env.GLOBALVM_ADMIN_TOKEN,
  });
  const db =
    running.services.catalog.kind === "postgres"
      ? "Postgres (DATABASE_URL)"
      : `PGlite in ${values["data-dir"]}`;
  console.log(`globalvm control plane on ${running.url} — catalog: ${db}`);
  console.log(`  API reference: ${running.url}/docs   OpenAPI: ${running.url}/openapi.json`);
  if (running.adminToken.kind === "generated") {
    console.log(`  admin token (shown once, keep it): ${running.adminToken.secret}`);
  } else if (running.adminToken.kind === "kept") {
    console.log("  admin token: the one generated on first start (set GLOBALVM_ADMIN_TOKEN to replace it)");
  }
  const stop = async () => {
    await running.close();
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

async function serveRegionalManager(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      region: { type: "string" },
      datacenter: { type: "string" },
      "control-plane": { type: "string" },
      "data-dir": { type: "string" },
      port: { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
    },
  });
  for (const flag of ["region", "datacenter", "control-plane", "data-dir"] as const) {
    if (!values[flag]) throw new UsageError(`serve regional-manager needs --${flag}`);
  }
  const credential = process.env.GLOBALVM_MANAGER_CREDENTIAL;
  if (!credential) {
    throw new UsageError(
      "set GLOBALVM_MANAGER_CREDENTIAL to the secret an admin issued with POST /v1/manager-credentials",
    );
  }
  const running = await startRegionalManager({
    region: values.region as string,
    datacenter: values.datacenter as string,
    controlPlaneUrl: values["control-plane"] as string,
    credential,
    dataDir: values["data-dir"] as string,
    port: parsePort(values.port, 0),
    host: values.host,
  });
  console.log(`globalvm regional manager of ${values.datacenter} (${values.region}) on ${running.url}`);
  const stop = async () => {
    await running.close();
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

async function migrate(args: string[]) {
  const { values } = parseArgs({ args, options: { "data-dir": { type: "string", default: ".globalvm" } } });
  const catalog = openCatalog(catalogLocation(values["data-dir"]));
  await catalog.migrate();
  await catalog.close();
  console.log(`catalog migrated (${catalog.kind})`);
}

async function main(argv: string[]) {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve": {
      const [service, ...args] = rest;
      if (service === "control-plane") return serveControlPlane(args);
      if (service === "regional-manager") return serveRegionalManager(args);
      throw new UsageError(`unknown service '${service ?? ""}': use control-plane or regional-manager`);
    }
    case "migrate":
      return migrate(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(HELP);
      return;
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
    console.error(`globalvm: ${(error as Error).message}\n\n${HELP}`);
    process.exit(2);
  }
  console.error(`globalvm: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
