// globalvm image share | unshare | family | set-family: who else may boot an image, and the
// families that name one image of several.
import type { Image } from "../client/api.ts";
import {
  type Command,
  CommandFailure,
  EXIT_OK,
  parseCommandLine,
  positionalArgs,
  UsageError,
} from "./command.ts";
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  callApi,
  connect,
  oneArgumentCommandLine,
  resolveConnection,
} from "./connection.ts";
import {
  describeImage,
  expectImageAnswer,
  imageCall,
  NAME_PATTERN,
  PROJECT_ID_PATTERN,
  type RefusalHelp,
  requireImage,
} from "./image-common.ts";

const SHARE_USAGE = `Usage: globalvm image share ID|NAME --project PRJ [--project PRJ…] [options]

Shares an image read-only with other projects (its members): they see it with
\`globalvm image ls --shared\` and boot VM groups from it; they can never change or delete it,
nor see who else it is shared with.

Options:
  --project PRJ    a project ID (prj_…) to share with; repeat for several
${CONNECTION_HELP}
`;

const UNSHARE_USAGE = `Usage: globalvm image unshare ID|NAME --project PRJ [--project PRJ…] [options]

Stops sharing an image with projects it is shared with.

Options:
  --project PRJ    a project ID (prj_…) to remove from the members; repeat for several
${CONNECTION_HELP}
`;

const FAMILY_USAGE = `Usage: globalvm image family FAMILY [options]

Shows the image a family names now (GET /v1/image-families/{family}): of the project's images
of that family, the one whose current version is active and newest. VM groups naming the
family follow this answer.

Options:
${CONNECTION_HELP}
`;

const SET_FAMILY_USAGE = `Usage: globalvm image set-family ID|NAME (FAMILY | --none) [options]

Puts an image in a family (or, with --none, in none); the family then names the newest active
image of it, and VM groups following the family move to it.

Options:
  --none           take the image out of its family
${CONNECTION_HELP}
`;

const MEMBER_OPTIONS = { ...CONNECTION_OPTIONS, project: { type: "string", multiple: true } } as const;

/** ID|NAME and the --project IDs, checked before anything is asked. */
function memberCommandLine(args: string[], usage: string) {
  const { values, positionals } = parseCommandLine(args, MEMBER_OPTIONS, usage, true);
  const [idOrName] = positionalArgs(positionals, ["ID|NAME"], usage) as [string];
  const projects = values.project ?? [];
  if (projects.length === 0) throw new UsageError("--project PRJ is required", usage);
  for (const project of projects) {
    if (!PROJECT_ID_PATTERN.test(project))
      throw new UsageError(`--project must be a project ID (prj_…), not '${project}'`, usage);
  }
  return { values, idOrName, projects: [...new Set(projects)] };
}

function membersText(image: Image): string {
  return image.members.length === 0
    ? `image ${image.name} is shared with no other project`
    : `image ${image.name} is shared with ${image.members.join(", ")}`;
}

/** The refused member named by its --project flag ("members[1]" → "--project prj_…"). */
function memberHelp(members: string[]): RefusalHelp {
  return {
    flagOf: (path) => {
      const index = /^members\[(\d+)\]$/.exec(path)?.[1];
      return index === undefined ? undefined : `--project ${members[Number(index)]}`;
    },
    hints: {
      project_not_found: "give the ID of an existing project (prj_…)",
      invalid_member: "an image is always its own project's: share it with other projects",
      forbidden:
        "sharing an image needs a read-write token of the project that owns it (an image shared with yours is read-only)",
    },
  };
}

async function setMembers(args: string[], usage: string, share: boolean): Promise<number> {
  const { values, idOrName, projects } = memberCommandLine(args, usage);
  const client = connect(resolveConnection(values, process.env));
  const image = await requireImage(client, idOrName);
  if (!share) {
    const strangers = projects.filter((p) => !image.members.includes(p));
    if (strangers.length > 0)
      throw new CommandFailure(
        `image ${image.name} is not shared with ${strangers.join(", ")}`,
        membersText(image),
      );
  }
  const members = share
    ? [...image.members, ...projects.filter((p) => !image.members.includes(p))]
    : image.members.filter((p) => !projects.includes(p));
  const unchanged = members.length === image.members.length;
  const after = unchanged
    ? image
    : await imageCall(
        `${share ? "share" : "unshare"} image ${image.name}`,
        () => client.PATCH("/v1/images/{id}", { params: { path: { id: image.id } }, body: { members } }),
        memberHelp(members),
      );
  if (values.json) {
    process.stdout.write(`${JSON.stringify(after)}\n`);
  } else {
    const note = share
      ? unchanged
        ? " already"
        : ": they can see it (`globalvm image ls --shared`) and boot VM groups from it, never change or delete it"
      : "";
    process.stdout.write(
      share && unchanged ? `${membersText(after)} already\n` : `${membersText(after)}${note}\n`,
    );
  }
  return EXIT_OK;
}

export const share: Command = {
  summary: "share an image read-only with other projects",
  usage: SHARE_USAGE,
  run: (args) => setMembers(args, SHARE_USAGE, true),
};

export const unshare: Command = {
  summary: "stop sharing an image with projects",
  usage: UNSHARE_USAGE,
  run: (args) => setMembers(args, UNSHARE_USAGE, false),
};

function checkFamily(usage: string) {
  return (family: string) => {
    if (!NAME_PATTERN.test(family))
      throw new UsageError(
        `'${family}' is not a family name (lowercase letters, digits and '-', starting with a letter)`,
        usage,
      );
  };
}

export const family: Command = {
  summary: "show the image a family names now",
  usage: FAMILY_USAGE,
  async run(args) {
    const { argument, json, client } = oneArgumentCommandLine(
      args,
      FAMILY_USAGE,
      "FAMILY",
      checkFamily(FAMILY_USAGE),
    );
    const answer = await callApi(() =>
      client.GET("/v1/image-families/{family}", { params: { path: { family: argument } } }),
    );
    if (answer.response.status === 404)
      throw new CommandFailure(
        `no image of family ${argument} in this project`,
        `put one in it: \`globalvm image set-family ID|NAME ${argument}\``,
      );
    const image = expectImageAnswer(`resolve image family ${argument}`, answer);
    process.stdout.write(
      json
        ? `${JSON.stringify(image)}\n`
        : `family ${argument} names image ${image.name}\n${describeImage(image)}`,
    );
    return EXIT_OK;
  },
};

const SET_FAMILY_OPTIONS = { ...CONNECTION_OPTIONS, none: { type: "boolean", default: false } } as const;

export const setFamily: Command = {
  summary: "put an image in a family (or --none)",
  usage: SET_FAMILY_USAGE,
  async run(args) {
    const { values, positionals } = parseCommandLine(args, SET_FAMILY_OPTIONS, SET_FAMILY_USAGE, true);
    const names = values.none ? ["ID|NAME"] : ["ID|NAME", "FAMILY"];
    const [idOrName, name] = positionalArgs(positionals, names, SET_FAMILY_USAGE) as [
      string,
      string | undefined,
    ];
    if (name !== undefined) checkFamily(SET_FAMILY_USAGE)(name);
    const client = connect(resolveConnection(values, process.env));
    const image = await requireImage(client, idOrName);
    const after = await imageCall(
      `set the family of image ${image.name}`,
      () =>
        client.PATCH("/v1/images/{id}", {
          params: { path: { id: image.id } },
          body: { family: name ?? null },
        }),
      {
        flagOf: (path) => (path === "family" ? "FAMILY" : undefined),
        hints: { forbidden: "changing an image needs a read-write token of the project that owns it" },
      },
    );
    process.stdout.write(
      values.json
        ? `${JSON.stringify(after)}\n`
        : after.family === null
          ? `image ${after.name} is in no family\n`
          : `image ${after.name} is in family ${after.family}: \`globalvm image family ${after.family}\` shows the image it names\n`,
    );
    return EXIT_OK;
  },
};
