// examples/openapi as its README runs it, against a real stack (control plane and two
// regional managers as processes, real guests): the curl flow, the type generation from the
// live /openapi.json (which must reproduce the committed file), and the generated client.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGuestImage, REPO_ROOT } from "../support/compute.ts";
import { type Stack, startStack } from "../support/stack.ts";

const execFileAsync = promisify(execFile);
const EXAMPLE = join(REPO_ROOT, "examples/openapi");
const GENERATED = join(EXAMPLE, "globalvm-api.d.ts");
let stack: Stack;

/** The README's commands after the first (`eval "$(npx globalvm env)"`, which the env replaces). */
function readmeCommands(): string[] {
  const readme = readFileSync(join(EXAMPLE, "README.md"), "utf8");
  const block = readme.match(/```sh\n([\s\S]*?)```/)?.[1] ?? "";
  const lines = block.trim().split("\n");
  expect(lines[0]).toBe('eval "$(npx globalvm env)"');
  return lines.slice(1);
}

// Asynchronous: a synchronous child would stall this process's event loop, and its pooled
// connections to the control plane would go stale unnoticed.
async function run(command: string): Promise<string> {
  const { stdout } = await execFileAsync("bash", ["-euo", "pipefail", "-c", command], {
    cwd: REPO_ROOT,
    env: { ...process.env, GLOBALVM_ENDPOINT: stack.controlPlane, GLOBALVM_TOKEN: stack.projectToken },
    encoding: "utf8",
    timeout: 600_000,
    maxBuffer: 64 << 20,
  });
  return stdout;
}

beforeAll(async () => {
  ensureGuestImage();
  stack = await startStack({ name: "oapi", regions: ["eu-west", "us-east"] });
}, 180_000);

afterAll(() => stack?.stop(), 120_000);

describe("examples/openapi", () => {
  it("runs the README's commands: curl flow, type generation, generated client", async () => {
    const [curlFlow, generate, clientFlow] = readmeCommands() as [string, string, string];
    expect(curlFlow).toBe("examples/openapi/quickstart.sh");

    // The curl flow prints the group, its instances and the image's replicas as JSON lines.
    const curlLines = (await run(curlFlow))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    const [group, instances, image] = curlLines;
    expect(group.state, stack.logs()).toBe("ready");
    expect(group.datacenter).toBe("us-east-a");
    expect(instances.map((i: any) => [i.datacenter, i.state])).toEqual([
      ["us-east-a", "ready"],
      ["us-east-a", "ready"],
    ]);
    const replicas = new Map(image.replicas.map((r: any) => [r.datacenter, r]));
    expect((replicas.get("eu-west-a") as any)?.state).toBe("available");
    expect((replicas.get("us-east-a") as any)?.state).toBe("available");
    expect((replicas.get("eu-west-a") as any).local_id).not.toBe((replicas.get("us-east-a") as any).local_id);

    // Types generated from the live document reproduce the committed file.
    const committed = readFileSync(GENERATED, "utf8");
    await run(generate);
    expect(
      readFileSync(GENERATED, "utf8") === committed,
      `${GENERATED} is stale: run the README's command`,
    ).toBe(true);

    const summary = JSON.parse((await run(clientFlow)).trim());
    expect(summary.instances.map((i: any) => [i.datacenter, i.state])).toEqual([
      ["us-east-a", "ready"],
      ["us-east-a", "ready"],
    ]);
    expect(summary.replicas.map((r: any) => r.state)).toEqual(["available", "available"]);

    // Both flows cleaned up after themselves.
    const groups = await stack.call("GET", "/v1/vm-groups", stack.projectToken).catch((error) => {
      throw new Error(`the control plane did not answer (${error}):\n${stack.logs()}`);
    });
    expect(groups.body.items).toEqual([]);
    const images = await stack.call("GET", "/v1/images", stack.projectToken);
    expect(images.body.items).toEqual([]);
  }, 900_000);
});
