// Bundles a provider into two files with no runtime dependencies (node builtins only), for
// Terraform to launch: the executable, a small launcher (provider/server/launcher-main.ts),
// and beside it the provider program (`<executable>.program.cjs`): the entry module's
// `provider` export with the code that serves it. A launch the provider daemon serves loads
// only the launcher (see provider/README.md).
//
// The shebang names the absolute path of the Node that runs the build (Node 24 from the
// project's devDependencies) rather than `#!/usr/bin/env node`: the `node` on PATH may be
// older, and Terraform runs the provider with whatever environment it was given. Pass
// `--node /path/to/node` (or nodePath) to choose another interpreter.
//   npx node provider/build/bundle.ts [--entry provider/main.ts] [--out .globalvm/terraform-provider-globalvm]

import { chmodSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type BuildOptions, build } from "esbuild";
import { PROGRAM_SUFFIX } from "../server/program.ts";

export const REPO_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

export interface BundleOptions {
  /** A module whose `provider` export is the ProviderDefinition to serve. */
  entry: string;
  outfile: string;
  nodePath?: string;
}

const COMMON: BuildOptions = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  minify: true,
  legalComments: "none",
  logLevel: "warning",
};

/** The program's source: the entry's provider and the two ways to serve it. */
export function programSource(entry: string): string {
  const server = resolve(REPO_ROOT, "provider/server");
  return [
    `export { provider } from ${JSON.stringify(resolve(entry))};`,
    `export { serveProvider } from ${JSON.stringify(resolve(server, "serve.ts"))};`,
    `export { runDaemon } from ${JSON.stringify(resolve(server, "daemon.ts"))};`,
  ].join("\n");
}

export const LAUNCHER_ENTRY = resolve(REPO_ROOT, "provider/server/launcher-main.ts");

/** Builds the executable at `outfile` and its program beside it; returns the executable's path. */
export async function bundleProvider(options: BundleOptions): Promise<string> {
  const outfile = resolve(options.outfile);
  mkdirSync(dirname(outfile), { recursive: true });
  const nodePath = options.nodePath ?? process.execPath;
  await build({
    ...COMMON,
    stdin: {
      contents: programSource(options.entry),
      resolveDir: REPO_ROOT,
      sourcefile: "program.ts",
      loader: "ts",
    },
    outfile: `${outfile}${PROGRAM_SUFFIX}`,
  });
  await build({
    ...COMMON,
    entryPoints: [LAUNCHER_ENTRY],
    outfile,
    banner: { js: `#!${nodePath}` },
  });
  chmodSync(outfile, 0o755);
  return outfile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      entry: { type: "string", default: resolve(REPO_ROOT, "provider/main.ts") },
      out: { type: "string", default: resolve(REPO_ROOT, ".globalvm/build/terraform-provider-globalvm") },
      node: { type: "string" },
    },
  });
  const outfile = await bundleProvider({
    entry: values.entry,
    outfile: values.out,
    ...(values.node ? { nodePath: values.node } : {}),
  });
  console.log(`built ${outfile}`);
}
