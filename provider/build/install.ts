// Installs a bundled provider into a Terraform filesystem mirror (unpacked layout) and
// writes a CLI configuration that makes `terraform init` take globalvm/globalvm from it.
//   npx node provider/build/install.ts [--mirror DIR] [--entry provider/main.ts]
// then: export TF_CLI_CONFIG_FILE=<printed path>

import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PROGRAM_SUFFIX } from "../server/program.ts";
import { bundleProvider, REPO_ROOT } from "./bundle.ts";

export const PROVIDER_HOST = "registry.terraform.io";
export const PROVIDER_NAMESPACE = "globalvm";
export const PROVIDER_TYPE = "globalvm";
export const PROVIDER_VERSION = "0.1.0";
export const PROVIDER_ADDRESS = `${PROVIDER_HOST}/${PROVIDER_NAMESPACE}/${PROVIDER_TYPE}`;

export function terraformPlatform(platform = process.platform, arch = process.arch): string {
  const os = platform === "win32" ? "windows" : platform;
  const cpu = arch === "x64" ? "amd64" : arch === "ia32" ? "386" : arch;
  return `${os}_${cpu}`;
}

/** Where Terraform looks for the executable in an unpacked mirror. */
export function mirrorExecutablePath(mirrorDir: string, version = PROVIDER_VERSION): string {
  return join(
    mirrorDir,
    PROVIDER_HOST,
    PROVIDER_NAMESPACE,
    PROVIDER_TYPE,
    version,
    terraformPlatform(),
    `terraform-provider-${PROVIDER_TYPE}_v${version}`,
  );
}

export function cliConfig(mirrorDir: string): string {
  return `# Written by provider/build/install.ts: take ${PROVIDER_ADDRESS} from the local mirror,
# every other provider from its registry.
provider_installation {
  filesystem_mirror {
    path    = ${JSON.stringify(mirrorDir)}
    include = [${JSON.stringify(PROVIDER_ADDRESS)}]
  }
  direct {
    exclude = [${JSON.stringify(PROVIDER_ADDRESS)}]
  }
}
`;
}

/** Adds the installed build's checksum to a working directory's .terraform.lock.hcl. */
export function lockCommand(mirrorDir: string): string {
  return `terraform providers lock -fs-mirror=${mirrorDir} -platform=${terraformPlatform()} ${PROVIDER_ADDRESS}`;
}

export interface InstallOptions {
  mirrorDir: string;
  entry?: string;
  cliConfigFile?: string;
  nodePath?: string;
}

export interface InstallResult {
  executable: string;
  cliConfigFile: string;
  /** True when a different build was already installed under the same version (lock files break). */
  replacedDifferentBuild: boolean;
}

export async function installProvider(options: InstallOptions): Promise<InstallResult> {
  const mirrorDir = resolve(options.mirrorDir);
  // The build output stays outside the mirror, whose top-level directories must be hostnames.
  const built = await bundleProvider({
    entry: options.entry ?? resolve(REPO_ROOT, "provider/main.ts"),
    outfile: join(mirrorDir, "..", "build", "terraform-provider-globalvm"),
    ...(options.nodePath ? { nodePath: options.nodePath } : {}),
  });
  const executable = mirrorExecutablePath(mirrorDir);
  // The executable and its program travel together (Terraform checksums the whole directory).
  const files = [
    { from: built, to: executable },
    { from: `${built}${PROGRAM_SUFFIX}`, to: `${executable}${PROGRAM_SUFFIX}` },
  ];
  // esbuild output is deterministic, so reinstalling unchanged sources keeps the checksum
  // that working directories recorded in .terraform.lock.hcl.
  const replacedDifferentBuild = files.some(
    ({ from, to }) => existsSync(to) && !readFileSync(to).equals(readFileSync(from)),
  );
  mkdirSync(resolve(executable, ".."), { recursive: true });
  for (const { from, to } of files) copyFileSync(from, to);
  // The bundle is CommonJS without a .js extension. Inside a "type": "module" package (this
  // repository, when the mirror or a working directory's .terraform sits in it) Node would
  // refuse it; this file travels with the executable when terraform init copies the package.
  writeFileSync(join(resolve(executable, ".."), "package.json"), '{ "type": "commonjs" }\n');
  const cliConfigFile = resolve(options.cliConfigFile ?? join(mirrorDir, "..", "terraform.rc"));
  writeFileSync(cliConfigFile, cliConfig(mirrorDir));
  return { executable, cliConfigFile, replacedDifferentBuild };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      mirror: { type: "string", default: resolve(REPO_ROOT, ".globalvm/terraform/mirror") },
      entry: { type: "string" },
      "cli-config": { type: "string" },
      node: { type: "string" },
    },
  });
  const { executable, cliConfigFile, replacedDifferentBuild } = await installProvider({
    mirrorDir: values.mirror,
    ...(values.entry ? { entry: values.entry } : {}),
    ...(values["cli-config"] ? { cliConfigFile: values["cli-config"] } : {}),
    ...(values.node ? { nodePath: values.node } : {}),
  });
  const mirrorDir = resolve(values.mirror);
  console.log(`installed ${executable}
CLI configuration: ${cliConfigFile}

Use it with:
  export TF_CLI_CONFIG_FILE=${cliConfigFile}
  terraform init

with, in your configuration:
  terraform {
    required_providers {
      globalvm = { source = "globalvm/globalvm", version = "${PROVIDER_VERSION}" }
    }
  }

Reinstalling unchanged sources reproduces the same file, so lock files stay valid.
A changed build under the same version has another checksum: a working directory
initialised earlier then fails with "does not match any of the checksums recorded in the
dependency lock file" (terraform init -upgrade does not help). Recover in that directory,
keeping the other providers' locks, with:
  ${lockCommand(mirrorDir)}
`);
  if (replacedDifferentBuild) {
    console.log(
      "NOTE: this replaced a different build of 0.1.0: existing working directories need the step above.",
    );
  }
}
