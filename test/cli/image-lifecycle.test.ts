// globalvm image deprecate | obsolete | activate | delete-version | rollback | share | unshare |
// family | set-family, and image ls --shared/--family, against a control plane served on
// loopback (real HTTP, real catalog). Versions are committed as the origin's manager commits
// uploads; only the delete-image-version handler runs (on versions no datacenter holds).
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { imageReplicas, operations, vmGroups } from "../../api/catalog/schema.ts";
import { deleteImageVersion } from "../../api/orchestrator/images/handlers.ts";
import { OperationRunner } from "../../api/orchestrator/runner.ts";
import { createTestApi, serveOnLoopback, type TestApi } from "../support/api.ts";
import { runCli } from "../support/cli.ts";
import { replicaReport, SMALL_MACHINE } from "../support/project-fixtures.ts";

type Project = Awaited<ReturnType<TestApi["createProject"]>>;

let api: TestApi;
let server: Awaited<ReturnType<typeof serveOnLoopback>>;
let runner: OperationRunner;
let acme: Project;
let other: Project;
let manager: string;
let env: Record<string, string>;
let otherEnv: Record<string, string>;
const ids: Record<string, string> = {};

async function image(name: string, versions: number) {
  const created = await api.expectStatus(201, "POST", "/v1/images", {
    token: acme.token,
    body: { name, origin_region: "eu-west" },
  });
  for (let v = 1; v <= versions; v++) {
    await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${created.id}/versions/${v}`, {
      token: manager,
      body: replicaReport(`eu-${created.id}-${v}`),
    });
  }
  ids[name] = created.id;
  return created.id as string;
}

beforeAll(async () => {
  api = await createTestApi("pglite");
  await api.expectStatus(201, "POST", "/v1/regions", { body: { name: "eu-west" } });
  const credential = await api.expectStatus(201, "POST", "/v1/manager-credentials", {
    body: { region: "eu-west", datacenter: "eu-west-a" },
  });
  manager = credential.secret;
  await api.expectStatus(200, "PUT", "/v1/datacenters/eu-west-a", {
    token: manager,
    body: {
      region: "eu-west",
      manager_url: "http://127.0.0.1:9",
      capacity: { vcpus: 16, memory_mb: 32_768, disk_bytes: 100e9 },
    },
  });
  acme = await api.createProject("acme");
  other = await api.createProject("other");
  await image("web", 3);
  await image("app", 2);
  await image("solo", 1);
  await image("base", 2);
  runner = new OperationRunner({
    services: api.services,
    handlers: { "delete-image-version": deleteImageVersion },
    log: () => {},
  });
  await runner.start();
  server = await serveOnLoopback(api);
  env = { GLOBALVM_ENDPOINT: server.url, GLOBALVM_TOKEN: acme.token };
  otherEnv = { GLOBALVM_ENDPOINT: server.url, GLOBALVM_TOKEN: other.token };
}, 60_000);

afterAll(async () => {
  await runner?.stop();
  await server?.close();
  await api?.close();
});

const cli = (...args: string[]) => runCli(args, env);
/** The versions' `version:state[*]` (* current), newest first. */
async function states(name: string): Promise<string[]> {
  const listed = await cli("image", "versions", name, "--json");
  expect(listed.code, listed.stderr).toBe(0);
  return JSON.parse(listed.stdout).items.map(
    (v: { version: number; state: string; current: boolean }) =>
      `${v.version}:${v.state}${v.current ? "*" : ""}`,
  );
}

describe("globalvm image deprecate | obsolete | activate", () => {
  it("deprecates the current version: followers move to the newest active one, and versions shows STATE", async () => {
    const result = await cli("image", "deprecate", "web", "--version", "3");
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("version 3 of image web is deprecated: it still boots");
    expect(result.stdout).toContain("current version: 2 (was 3); VM groups following web roll to it");
    const table = await cli("image", "versions", "web");
    const lines = table.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^VERSION\s+CURRENT\s+STATE\s+SIZE\s+DIGEST\s+CREATED\s+REPLICAS$/);
    expect(lines[1]).toMatch(/^3\s+deprecated\s+4\.0 KiB\s/);
    expect(lines[2]).toMatch(/^2\s+yes\s+active\s/);
  });

  it("schedules deprecate and obsolete times with --at, shown in a SCHEDULED column", async () => {
    const deprecated = await cli("image", "deprecate", "web", "--version", "2", "--at", "2099-01-31");
    expect(deprecated.code, deprecated.stderr).toBe(0);
    expect(deprecated.stdout).toContain(
      "version 2 of image web becomes deprecated at 2099-01-31T00:00:00.000Z; it is active until then",
    );
    const obsolete = await cli(
      "image",
      "obsolete",
      "web",
      "--version",
      "2",
      "--at",
      "2099-06-01T12:00:00+02:00",
      "--json",
    );
    expect(obsolete.code, obsolete.stderr).toBe(0);
    expect(JSON.parse(obsolete.stdout)).toMatchObject({
      version: 2,
      state: "active",
      deprecate_at: "2099-01-31T00:00:00.000Z",
      obsolete_at: "2099-06-01T10:00:00.000Z",
    });
    const table = await cli("image", "versions", "web");
    expect(table.stdout).toMatch(
      /^VERSION\s+CURRENT\s+STATE\s+SIZE\s+DIGEST\s+CREATED\s+SCHEDULED\s+REPLICAS$/m,
    );
    expect(table.stdout).toMatch(
      /^2\s+yes\s+active\s.*deprecate 2099-01-31T00:00:00\.000Z, obsolete 2099-06-01T10:00:00\.000Z\s+eu-west-a:available$/m,
    );
    expect(table.stdout).toMatch(/^3\s+deprecated\s.*\s-\s+eu-west-a:available$/m);
  });

  it("activates a version again, clearing its times: it is current once more", async () => {
    const result = await cli("image", "activate", "web", "--version", "3");
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("version 3 of image web is active");
    expect(result.stdout).toContain("current version: 3 (was 2)");
    const cleared = await cli("image", "activate", "web", "--version", "2", "--json");
    expect(JSON.parse(cleared.stdout)).toMatchObject({
      state: "active",
      deprecate_at: null,
      obsolete_at: null,
    });
    expect(await states("web")).toEqual(["3:active*", "2:active", "1:active"]);
  });

  it("makes a version obsolete; rollback to it is refused with a clear 409", async () => {
    const result = await cli("image", "obsolete", "web", "--version", "1");
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("version 1 of image web is obsolete: no new instance may boot it");
    expect(result.stdout).toContain("current version: 3\n");
    const refused = await cli("image", "rollback", "web", "--to", "1");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("failed: version_obsolete (409)");
    expect(refused.stderr).toContain("`globalvm image activate web --version 1`");
  });

  it("an unknown version is named, with where to look", async () => {
    const result = await cli("image", "deprecate", "web", "--version", "9");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("make version 9 of image web deprecated failed: not_found (404)");
    expect(result.stderr).toContain("image web has no version 9: see `globalvm image versions web`");
  });

  it("bad input is a usage error naming the flag, before anything is asked", async () => {
    const cases: [string[], string][] = [
      [["image", "deprecate", "web"], "--version N is required"],
      [
        ["image", "obsolete", "web", "--version", "two"],
        "--version must be a version number (1, 2, …), not 'two'",
      ],
      [
        ["image", "activate", "web", "--version", "0"],
        "--version must be a version number (1, 2, …), not '0'",
      ],
      [["image", "deprecate", "web", "--version", "2", "--at", "tomorrow"], "--at must be an ISO 8601 time"],
      [["image", "rollback", "web"], "give one of --to N and --latest"],
      [["image", "rollback", "web", "--to", "2", "--latest"], "give one of --to N and --latest"],
      [["image", "rollback", "web", "--to", "x"], "--to must be a version number"],
      [["image", "share", "web"], "--project PRJ is required"],
      [
        ["image", "share", "web", "--project", "other"],
        "--project must be a project ID (prj_…), not 'other'",
      ],
      [["image", "family", "Debian_Web"], "'Debian_Web' is not a family name"],
      [["image", "ls", "--family", "A B"], "--family must be a family name"],
      [["image", "delete-version", "web", "--version", "1", "--force"], "'--force'"],
    ];
    const results = await Promise.all(
      cases.map(([args]) => runCli(args, { GLOBALVM_ENDPOINT: "http://127.0.0.1:1", GLOBALVM_TOKEN: "t" })),
    );
    for (const [i, result] of results.entries()) {
      const [args, message] = cases[i] as [string[], string];
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr, args.join(" ")).toContain(message);
    }
  });
});

describe("globalvm image rollback", () => {
  it("sets the current version by hand and says followers roll back one instance at a time; --latest un-pins", async () => {
    const result = await cli("image", "rollback", "web", "--to", "2");
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("image web: version 2 is now current, set by hand");
    expect(result.stdout).toContain(
      "VM groups following web roll back from version 3 to 2 one instance at a time",
    );
    const show = await cli("image", "show", "web");
    expect(show.stdout).toMatch(/^version:\s+2 \(set by hand/m);
    expect(show.stdout).toMatch(/^pinned version:\s+2$/m);
    const ls = await cli("image", "ls");
    expect(ls.stdout).toMatch(/^web\s+img_\S+\s+qcow2\s+2 \(pinned\)\s/m);

    const pinned = await cli("image", "delete-version", "web", "--version", "2");
    expect(pinned.code).toBe(1);
    expect(pinned.stderr).toContain("failed: version_pinned (409)");
    expect(pinned.stderr).toContain("`globalvm image rollback web --to N`, or --latest");

    const latest = await cli("image", "rollback", "web", "--latest");
    expect(latest.code, latest.stderr).toBe(0);
    expect(latest.stdout).toContain(
      "image web follows its newest active version again: version 3 is current",
    );
    expect(latest.stdout).toContain("roll forward from version 2 to 3");
    expect(JSON.parse((await cli("image", "show", "web", "--json")).stdout)).toMatchObject({
      version: 3,
      pinned_version: null,
    });
  });

  it("an unknown version is refused naming --to", async () => {
    const result = await cli("image", "rollback", "web", "--to", "9");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("image_version_not_found (422)");
    expect(result.stderr).toContain("--to: unknown version (current_version)");
  });
});

describe("globalvm image delete-version", () => {
  it("refuses a version a VM group pins with 409 version_in_use, naming the group", async () => {
    const operation = await api.expectStatus(202, "POST", "/v1/vm-groups", {
      token: acme.token,
      body: {
        name: "pinned",
        image: ids.app,
        image_version: 1,
        region: "eu-west",
        size: 1,
        machine: SMALL_MACHINE,
      },
    });
    const { db } = api.services;
    await db
      .update(vmGroups)
      .set({ datacenter: "eu-west-a", datacenters: ["eu-west-a"], state: "ready" })
      .where(eq(vmGroups.id, operation.target.id));
    await db.update(operations).set({ state: "succeeded" }).where(eq(operations.id, operation.id));
    const result = await cli("image", "delete-version", "app", "--version", "1");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("delete version 1 of image app failed: version_in_use (409)");
    expect(result.stderr).toContain("VM groups pinned");
    expect(result.stderr).toContain("`globalvm vm-group show GROUP` shows a group's pin");
    expect(await states("app")).toEqual(["2:active*", "1:active"]);
  });

  it("deletes a version and follows the operation with --wait", async () => {
    // No datacenter holds it any more: the operation has nothing to ask a manager.
    await api.services.db
      .delete(imageReplicas)
      .where(and(eq(imageReplicas.imageId, ids.web as string), eq(imageReplicas.version, 1)));
    const result = await runCli(["image", "delete-version", "web", "--version", "1", "--wait"], env, 60_000);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/version 1 of image web is deleted; removing its bytes \(op_\S+\)/);
    expect(result.stdout).toBe(
      "version 1 of image web is deleted and its bytes are gone from every datacenter\n",
    );
    expect(await states("web")).toEqual(["3:active*", "2:active", "1:deleted"]);
    const again = await cli("image", "delete-version", "web", "--version", "1");
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("version_deleted (409)");
  });

  it("without --wait prints the operation to follow; the last version is refused", async () => {
    await api.services.db
      .delete(imageReplicas)
      .where(and(eq(imageReplicas.imageId, ids.base as string), eq(imageReplicas.version, 1)));
    const result = await cli("image", "delete-version", "base", "--version", "1", "--json");
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      kind: "delete-image-version",
      target: { id: ids.base },
    });
    const last = await cli("image", "delete-version", "solo", "--version", "1");
    expect(last.code).toBe(1);
    expect(last.stderr).toContain("last_version (409)");
    expect(last.stderr).toContain("delete the image instead");
  });
});

describe("globalvm image share | unshare", () => {
  it("shares with a project, which sees it in ls --shared and cannot change it; unshare takes it back", async () => {
    const shared = await cli("image", "share", "web", "--project", other.id);
    expect(shared.code, shared.stderr).toBe(0);
    expect(shared.stdout).toContain(`image web is shared with ${other.id}: they can see it`);
    expect((await cli("image", "show", "web")).stdout).toMatch(new RegExp(`^members:\\s+${other.id}$`, "m"));
    const again = await cli("image", "share", "web", "--project", other.id);
    expect(again.stdout).toBe(`image web is shared with ${other.id} already\n`);

    const seen = await runCli(["image", "ls", "--shared"], otherEnv);
    expect(seen.code, seen.stderr).toBe(0);
    expect(seen.stdout).toMatch(
      /^NAME\s+ID\s+PROJECT\s+FORMAT\s+VERSION\s+SIZE\s+STATE\s+FAMILY\s+REPLICAS$/m,
    );
    expect(seen.stdout).toMatch(new RegExp(`^web\\s+${ids.web}\\s+${acme.id}\\s+qcow2\\s+3\\s`, "m"));
    expect((await runCli(["image", "ls", "--shared"], env)).stdout).toBe(
      "no image is shared with this project\n",
    );

    const refused = await runCli(["image", "deprecate", ids.web as string, "--version", "2"], otherEnv);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("forbidden (403)");
    expect(refused.stderr).toContain("an image shared with yours is read-only");

    const unshared = await cli("image", "unshare", "web", "--project", other.id);
    expect(unshared.code, unshared.stderr).toBe(0);
    expect(unshared.stdout).toBe("image web is shared with no other project\n");
    expect((await runCli(["image", "ls", "--shared"], otherEnv)).stdout).toBe(
      "no image is shared with this project\n",
    );
  });

  it("refuses a project that does not exist, or the image's own, naming the --project; unshare of a non-member fails", async () => {
    const unknown = "prj_00000000000000000000000000";
    const result = await cli("image", "share", "web", "--project", other.id, "--project", unknown);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("share image web failed: project_not_found (422)");
    expect(result.stderr).toContain(`--project ${unknown}: unknown project (members[1])`);
    const own = await cli("image", "share", "web", "--project", acme.id);
    expect(own.code).toBe(1);
    expect(own.stderr).toContain(`--project ${acme.id}: the image's own project`);
    expect(JSON.parse((await cli("image", "show", "web", "--json")).stdout).members).toEqual([]);
    const stranger = await cli("image", "unshare", "web", "--project", other.id);
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toContain(`image web is not shared with ${other.id}`);
  });
});

describe("globalvm image family | set-family | ls --family", () => {
  it("puts images in a family and shows the one it names", async () => {
    for (const name of ["app", "base"]) {
      const set = await cli("image", "set-family", name, "debian-web");
      expect(set.code, set.stderr).toBe(0);
      expect(set.stdout).toContain(`image ${name} is in family debian-web`);
    }
    const family = await cli("image", "family", "debian-web");
    expect(family.code, family.stderr).toBe(0);
    expect(family.stdout).toMatch(/^family debian-web names image (app|base)$/m);
    expect(family.stdout).toMatch(/^family:\s+debian-web$/m);
    const listed = await cli("image", "ls", "--family", "debian-web");
    expect(
      listed.stdout
        .trim()
        .split("\n")
        .slice(1)
        .map((l) => l.split(/\s+/)[0])
        .sort(),
    ).toEqual(["app", "base"]);
    const none = await cli("image", "set-family", "base", "--none");
    expect(none.stdout).toBe("image base is in no family\n");
    const json = JSON.parse((await cli("image", "family", "debian-web", "--json")).stdout);
    expect(json).toMatchObject({ name: "app", family: "debian-web" });
  });

  it("a family no image names fails and says how to name one", async () => {
    const result = await cli("image", "family", "nothing");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no image of family nothing in this project");
    expect(result.stderr).toContain("globalvm image set-family ID|NAME nothing");
    expect((await cli("image", "ls", "--family", "nothing")).stdout).toBe("no image of family nothing\n");
  });
});
