// A real control-plane process whose create-vm-group operations are run by the probe handler,
// for tests that kill it or run two of it on one database. Catalog: DATABASE_URL, else
// PROBE_DATA_DIR (PGlite). Prints "control plane on URL" once it serves.
import { startControlPlane } from "../../api/server.ts";
import { probeHandler } from "./probe.ts";

const env = process.env;
const required = (name: string) => {
  const value = env[name];
  if (!value) throw new Error(`${name} must be set`);
  return value;
};
const running = await startControlPlane({
  catalog: env.DATABASE_URL ? { databaseUrl: env.DATABASE_URL } : { dataDir: required("PROBE_DATA_DIR") },
  port: Number(env.PROBE_PORT ?? 0),
  adminToken: required("GLOBALVM_ADMIN_TOKEN"),
  // Two probes on one database share it, as control planes on one Postgres must.
  signingKeySecret: required("GLOBALVM_SIGNING_KEY_SECRET"),
  handlers: {
    "create-vm-group": probeHandler({
      log: required("PROBE_LOG"),
      steps: Number(env.PROBE_STEPS ?? 3),
      stepMs: Number(env.PROBE_STEP_MS ?? 300),
    }),
  },
  concurrency: env.PROBE_CONCURRENCY ? Number(env.PROBE_CONCURRENCY) : undefined,
  retry: env.PROBE_MAX_ATTEMPTS
    ? { maxAttempts: Number(env.PROBE_MAX_ATTEMPTS), retryDelaySeconds: 1 }
    : undefined,
  log: (line) => console.error(line),
});
console.log(`control plane on ${running.url}`);
const stop = () => void running.close().then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
