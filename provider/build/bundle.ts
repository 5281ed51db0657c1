// Bundles a provider entry point into one executable CommonJS file with no runtime
// dependencies (node builtins only), for Terraform to launch.
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
import { build } from "esbuild";

export const REPO_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

export interface BundleOptions {
  entry: string;
  outfile: string;
  nodePath?: string;
}

export async function bundleProvider(options: BundleOptions): Promise<string> {
  const outfile = resolve(options.outfile);
  mkdirSync(dirname(outfile), { recursive: true });
  const nodePath = options.nodePath ?? process.execPath;
  await build({
    entryPoints: [resolve(options.entry)],
    outfile,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    minify: true,
    legalComments: "none",
    banner: { js: `#!${nodePath}` },
    logLevel: "warning",
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
