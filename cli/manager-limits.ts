// The limits a regional manager puts on what clients and guests send it, set by flags of
// `globalvm serve regional-manager` or by environment variables (which `globalvm up` passes
// to the managers it starts). A flag wins over its variable; unset, the manager's default holds.
import type { RegionalManagerLimits } from "../regional-manager/service.ts";
import { UsageError } from "./command.ts";

interface LimitSetting {
  flag: string;
  env: string;
  key: keyof RegionalManagerLimits;
  help: string;
}

const SETTINGS: readonly LimitSetting[] = [
  {
    flag: "max-image-bytes",
    env: "GLOBALVM_MAX_IMAGE_BYTES",
    key: "maxImageBytes",
    help: "largest image an upload may declare (default 68719476736, 64 GiB)",
  },
  {
    flag: "max-manifest-chunks",
    env: "GLOBALVM_MAX_MANIFEST_CHUNKS",
    key: "maxChunks",
    help: "most chunks in an image's manifest (default 4194304: 32 GiB of data at 8 KiB a chunk)",
  },
  {
    flag: "max-manifest-bytes",
    env: "GLOBALVM_MAX_MANIFEST_BYTES",
    key: "maxManifestBytes",
    help: "largest manifest body (default 150994996, what the most chunks take)",
  },
  {
    flag: "max-guest-attributes",
    env: "GLOBALVM_MAX_GUEST_ATTRIBUTES",
    key: "maxGuestAttributes",
    help: "most guest attributes per instance (default 128; a guest over it gets 413)",
  },
  {
    flag: "max-guest-attribute-bytes",
    env: "GLOBALVM_MAX_GUEST_ATTRIBUTE_BYTES",
    key: "maxGuestAttributesTotalBytes",
    help: "most bytes of guest attributes per instance, in all (default 262144)",
  },
];

/** The parseArgs options of the limit flags. */
export const LIMIT_FLAGS = Object.fromEntries(
  SETTINGS.map((setting) => [setting.flag, { type: "string" as const }]),
) as Record<string, { type: "string" }>;

/** Lines for a usage text: each flag, then each variable. */
export const LIMIT_FLAGS_USAGE = SETTINGS.map((s) => `  --${s.flag} N\n      ${s.help}`).join("\n");
export const LIMIT_ENV_USAGE = SETTINGS.map((s) => `  ${s.env.padEnd(36)}same as --${s.flag}`).join("\n");

/** The limits the flags (else the environment) set; each must be a whole number above 0. */
export function managerLimits(
  flags: Record<string, string | boolean | undefined>,
  env: NodeJS.ProcessEnv,
  usage: string,
): Partial<RegionalManagerLimits> {
  const limits: Partial<RegionalManagerLimits> = {};
  for (const setting of SETTINGS) {
    const fromFlag = flags[setting.flag];
    const text = typeof fromFlag === "string" ? fromFlag : env[setting.env];
    if (text === undefined) continue;
    const value = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1) {
      const source = typeof fromFlag === "string" ? `--${setting.flag}` : setting.env;
      throw new UsageError(`${source} must be a whole number above 0, not '${text}'`, usage);
    }
    limits[setting.key] = value;
  }
  return limits;
}
