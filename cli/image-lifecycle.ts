// globalvm image deprecate | obsolete | activate | delete-version | rollback: an image's
// versions through their lifecycle, and which one is current.
import type { ApiClient, Image, Schemas } from "../client/api.ts";
import { type Command, EXIT_OK, parseCommandLine, positionalArgs, UsageError } from "./command.ts";
import { CONNECTION_HELP, CONNECTION_OPTIONS, connect, resolveConnection } from "./connection.ts";
import {
  imageCall,
  parseTimeFlag,
  parseVersionFlag,
  type RefusalHelp,
  requireImage,
} from "./image-common.ts";
import { reportOperationEnd, watchOperation } from "./operation.ts";

type UpdateImageVersion = Schemas["UpdateImageVersion"];
type VersionState = NonNullable<UpdateImageVersion["state"]>;

const VERSION_OPTIONS = { ...CONNECTION_OPTIONS, version: { type: "string" } } as const;
const TIMED_OPTIONS = { ...VERSION_OPTIONS, at: { type: "string" } } as const;

const DEPRECATE_USAGE = `Usage: globalvm image deprecate ID|NAME --version N [--at TIME] [options]

Deprecates version N: it still boots (groups pinned to it keep running and may grow), but VM
groups that follow the image or its family skip it. When it was the current version, the
newest active version becomes current and followers roll to it, one instance at a time.
With --at, the control plane deprecates it on its own at TIME (within a minute).

Options:
  --version N      the version (see \`globalvm image versions ID|NAME\`)
  --at TIME        when, as an ISO 8601 time (2027-01-31T12:00:00Z; a date is UTC midnight,
                   a time without an offset is local)
${CONNECTION_HELP}
`;

const OBSOLETE_USAGE = `Usage: globalvm image obsolete ID|NAME --version N [--at TIME] [options]

Makes version N obsolete: refused for new instances (a group pinned to it can be neither
created nor grown, 409 version_obsolete); running instances keep it. With --at, the control
plane makes it obsolete on its own at TIME (within a minute).

Options:
  --version N      the version (see \`globalvm image versions ID|NAME\`)
  --at TIME        when, as an ISO 8601 time (2027-01-31T12:00:00Z; a date is UTC midnight,
                   a time without an offset is local)
${CONNECTION_HELP}
`;

const ACTIVATE_USAGE = `Usage: globalvm image activate ID|NAME --version N [options]

Makes a deprecated or obsolete version N active again, and clears the deprecate and obsolete
times set for it. When it is newer than the current version (and no version is set by hand),
it becomes current and followers roll to it.

Options:
  --version N      the version (see \`globalvm image versions ID|NAME\`)
${CONNECTION_HELP}
`;

const DELETE_VERSION_USAGE = `Usage: globalvm image delete-version ID|NAME --version N [--wait] [options]

Deletes version N: it never boots again (it stays listed as deleted), and an operation removes
its bytes from every datacenter. Refused while an instance runs it or a group pins it
(version_in_use), while it is the current version set by hand (version_pinned), or when it is
the image's last version (last_version: delete the image instead).

Options:
  --version N      the version (see \`globalvm image versions ID|NAME\`)
  --wait           follow the operation until its bytes are gone (exit 1 if it fails)
${CONNECTION_HELP}
`;

const ROLLBACK_USAGE = `Usage: globalvm image rollback ID|NAME (--to N | --latest) [options]

Sets the image's current version by hand: every VM group that follows the image (no version
pin) rolls back to version N one instance at a time, never fewer than size - 1 ready. Groups
pinned to a version stay where they are, and while a version is set by hand a new upload does
not move followers. --latest follows the newest active version again.

Options:
  --to N           the version to make current (active or deprecated, not obsolete)
  --latest         un-pin: the newest active version is current again
${CONNECTION_HELP}
`;

/** The problem codes of the version calls, and what to do about each. */
function versionHelp(image: Image, version: number): RefusalHelp {
  const versions = `see \`globalvm image versions ${image.name}\``;
  return {
    flagOf: (path) =>
      path === "current_version"
        ? "--to"
        : path === "deprecate_at" || path === "obsolete_at"
          ? "--at"
          : path === "state"
            ? "--version"
            : undefined,
    hints: {
      not_found: `image ${image.name} has no version ${version}: ${versions}`,
      image_version_not_found: `image ${image.name} has no version ${version}: ${versions}`,
      version_in_use:
        "`globalvm vm-group show GROUP` shows a group's pin and the version each of its instances runs",
      version_pinned: `set another current version first: \`globalvm image rollback ${image.name} --to N\`, or --latest`,
      last_version: `version ${version} is all that is left of ${image.name}: delete the image instead`,
      version_deleted: `a deleted version cannot come back; ${versions}`,
      version_obsolete: `make it bootable first: \`globalvm image activate ${image.name} --version ${version}\``,
      forbidden:
        "changing an image needs a read-write token of the project that owns it (an image shared with yours is read-only)",
    },
  };
}

/** ID|NAME and --version N, with the other flags of `options`: checked before anything is asked. */
function versionCommandLine<const T extends typeof VERSION_OPTIONS>(
  args: string[],
  options: T,
  usage: string,
) {
  const { values, positionals } = parseCommandLine(args, options, usage, true);
  const [idOrName] = positionalArgs(positionals, ["ID|NAME"], usage) as [string];
  const version = parseVersionFlag((values as { version?: string }).version, "--version", usage);
  return { values, idOrName, version };
}

/** A client for the connection flags, and the image named. */
async function openImage(values: { endpoint?: string; token?: string }, idOrName: string) {
  const client = connect(resolveConnection(values, process.env));
  return { client, image: await requireImage(client, idOrName) };
}

const CONSEQUENCE: Record<VersionState, string> = {
  active: "it boots anywhere, and followers may run it again",
  deprecated: "it still boots, but VM groups following the image or its family skip it",
  obsolete: "no new instance may boot it; running instances keep it",
};

async function currentVersion(client: ApiClient, image: Image, version: number): Promise<Image> {
  return imageCall(
    `get image ${image.name}`,
    () => client.GET("/v1/images/{id}", { params: { path: { id: image.id } } }),
    versionHelp(image, version),
  );
}

/** deprecate and obsolete: the state now, or `--at` a time the control plane applies. */
function stateCommand(state: "deprecated" | "obsolete", summary: string, usage: string): Command {
  const timeField = state === "deprecated" ? "deprecate_at" : "obsolete_at";
  return {
    summary,
    usage,
    async run(args) {
      const { values, idOrName, version } = versionCommandLine(args, TIMED_OPTIONS, usage);
      const at = values.at === undefined ? undefined : parseTimeFlag(values.at, "--at", usage);
      const { client, image } = await openImage(values, idOrName);
      const body: UpdateImageVersion = at === undefined ? { state } : { [timeField]: at };
      return changeVersion(client, image, version, body, values.json, state, at);
    },
  };
}

async function changeVersion(
  client: ApiClient,
  image: Image,
  version: number,
  body: UpdateImageVersion,
  json: boolean,
  wanted: VersionState,
  at?: string,
): Promise<number> {
  const verb = at
    ? `schedule version ${version} of image ${image.name} to be ${wanted}`
    : `make version ${version} of image ${image.name} ${wanted}`;
  const detail = await imageCall(
    verb,
    () =>
      client.PATCH("/v1/images/{id}/versions/{version}", {
        params: { path: { id: image.id, version } },
        body,
      }),
    versionHelp(image, version),
  );
  if (json) {
    process.stdout.write(`${JSON.stringify(detail)}\n`);
    return EXIT_OK;
  }
  const after = await currentVersion(client, image, version);
  const lines = at
    ? [
        `version ${version} of image ${image.name} becomes ${wanted} at ${at}; it is ${detail.state} until then`,
      ]
    : [`version ${version} of image ${image.name} is ${detail.state}: ${CONSEQUENCE[wanted]}`];
  if (after.version !== image.version)
    lines.push(
      `current version: ${after.version ?? "-"} (was ${image.version ?? "-"}); VM groups following ${image.name} roll to it one instance at a time`,
    );
  else lines.push(`current version: ${after.version ?? "-"}`);
  process.stdout.write(`${lines.join("\n")}\n`);
  return EXIT_OK;
}

export const deprecate = stateCommand(
  "deprecated",
  "deprecate a version (now, or --at a time): followers skip it",
  DEPRECATE_USAGE,
);

export const obsolete = stateCommand(
  "obsolete",
  "make a version obsolete (now, or --at a time): no new instance boots it",
  OBSOLETE_USAGE,
);

export const activate: Command = {
  summary: "make a deprecated or obsolete version active again",
  usage: ACTIVATE_USAGE,
  async run(args) {
    const { values, idOrName, version } = versionCommandLine(args, VERSION_OPTIONS, ACTIVATE_USAGE);
    const { client, image } = await openImage(values, idOrName);
    const body = { state: "active", deprecate_at: null, obsolete_at: null } as const;
    return changeVersion(client, image, version, body, values.json, "active");
  },
};

const DELETE_OPTIONS = { ...VERSION_OPTIONS, wait: { type: "boolean", default: false } } as const;

export const deleteVersion: Command = {
  summary: "delete a version and remove its bytes everywhere (--wait follows it)",
  usage: DELETE_VERSION_USAGE,
  async run(args) {
    const { values, idOrName, version } = versionCommandLine(args, DELETE_OPTIONS, DELETE_VERSION_USAGE);
    const { client, image } = await openImage(values, idOrName);
    const operation = await imageCall(
      `delete version ${version} of image ${image.name}`,
      () =>
        client.DELETE("/v1/images/{id}/versions/{version}", { params: { path: { id: image.id, version } } }),
      versionHelp(image, version),
    );
    if (values.wait) {
      process.stderr.write(
        `version ${version} of image ${image.name} is deleted; removing its bytes (${operation.id})\n`,
      );
      return reportOperationEnd(
        await watchOperation(client, operation),
        values.json,
        `version ${version} of image ${image.name} is deleted and its bytes are gone from every datacenter`,
      );
    }
    process.stdout.write(
      values.json
        ? `${JSON.stringify(operation)}\n`
        : `version ${version} of image ${image.name} is deleted; operation ${operation.id} removes its bytes from every datacenter (follow it: globalvm operation watch ${operation.id})\n`,
    );
    return EXIT_OK;
  },
};

const ROLLBACK_OPTIONS = {
  ...CONNECTION_OPTIONS,
  to: { type: "string" },
  latest: { type: "boolean", default: false },
} as const;

export const rollback: Command = {
  summary: "set the current version by hand (--to N), followers roll to it; --latest un-pins",
  usage: ROLLBACK_USAGE,
  async run(args) {
    const { values, positionals } = parseCommandLine(args, ROLLBACK_OPTIONS, ROLLBACK_USAGE, true);
    const [idOrName] = positionalArgs(positionals, ["ID|NAME"], ROLLBACK_USAGE) as [string];
    if ((values.to === undefined) === !values.latest)
      throw new UsageError("give one of --to N and --latest", ROLLBACK_USAGE);
    const to = values.to === undefined ? null : parseVersionFlag(values.to, "--to", ROLLBACK_USAGE);
    const client = connect(resolveConnection(values, process.env));
    const image = await requireImage(client, idOrName);
    const after = await imageCall(
      to === null
        ? `make image ${image.name} follow its newest active version`
        : `make version ${to} image ${image.name}'s current version`,
      () =>
        client.PATCH("/v1/images/{id}", {
          params: { path: { id: image.id } },
          body: { current_version: to },
        }),
      versionHelp(image, to ?? 0),
    );
    process.stdout.write(values.json ? `${JSON.stringify(after)}\n` : `${rollbackText(image, after, to)}\n`);
    return EXIT_OK;
  },
};

function rollbackText(before: Image, after: Image, to: number | null): string {
  const now =
    to === null
      ? `image ${after.name} follows its newest active version again: version ${after.version ?? "-"} is current`
      : `image ${after.name}: version ${after.version ?? "-"} is now current, set by hand (new uploads do not move followers until \`globalvm image rollback ${after.name} --latest\`)`;
  if (before.version === after.version || after.version === null)
    return `${now}\nit was current already: VM groups following ${after.name} stay where they are`;
  const direction = before.version !== null && after.version < before.version ? "back" : "forward";
  return `${now}\nVM groups following ${after.name} roll ${direction} from version ${before.version ?? "-"} to ${after.version} one instance at a time (never fewer than size - 1 ready); groups pinned to a version stay where they are`;
}
