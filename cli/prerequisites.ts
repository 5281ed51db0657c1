// What `globalvm up` needs on the machine before it starts anything: QEMU and the guest image.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isExecutableOnPath } from "../common/executables.ts";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Where `npm run guest-image` (scripts/build-guest-image) writes the guest image. */
export const GUEST_IMAGE = join(REPO_ROOT, ".globalvm/images/guest.qcow2");

export const REQUIRED_TOOLS = [
  { name: "qemu-system-x86_64", install: "sudo apt-get install -y qemu-system-x86" },
  { name: "qemu-img", install: "sudo apt-get install -y qemu-utils" },
] as const;

export interface MachineFacts {
  onPath(tool: string): boolean;
  exists(path: string): boolean;
}

/** One message per missing prerequisite, each saying how to get it; empty when all are there. */
export function missingPrerequisites(machine: MachineFacts, guestImage = GUEST_IMAGE): string[] {
  const missing: string[] = [];
  for (const tool of REQUIRED_TOOLS) {
    if (!machine.onPath(tool.name))
      missing.push(`${tool.name} is not on PATH (Debian/Ubuntu: ${tool.install})`);
  }
  if (!machine.exists(guestImage))
    missing.push(`the guest image ${guestImage} is missing (build it: npm run guest-image)`);
  return missing;
}

export const thisMachine: MachineFacts = { onPath: (tool) => isExecutableOnPath(tool), exists: existsSync };
