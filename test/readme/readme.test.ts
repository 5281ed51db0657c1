// The README as a newcomer uses it. Its Quickstart runs as written: the first block in the
// background (the first terminal), the next ones in a shell (the second terminal), with only
// the data dir and port moved aside so the run cannot meet another stack on this machine.
// Every other command it names is checked against what exists: npm scripts, globalvm
// commands (each answers --help), files it links to, and the test command CI runs.
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.ts";
import { killRecordedVms, REPO_ROOT } from "../support/compute.ts";

const execFileAsync = promisify(execFile);
const README = readFileSync(join(REPO_ROOT, "README.md"), "utf8");

interface Block {
  section: string;
  language: string;
  code: string;
}

/** Fenced code blocks with the `## ` section they sit in. */
function codeBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  let section = "";
  let open: Block | undefined;
  for (const line of markdown.split("\n")) {
    if (open) {
      if (line.startsWith("```")) {
        blocks.push(open);
        open = undefined;
      } else open.code += `${line}\n`;
    } else if (line.startsWith("```")) {
      open = { section, language: line.slice(3).trim(), code: "" };
    } else if (line.startsWith("## ")) {
      section = line.slice(3).trim();
    }
  }
  return blocks;
}

const shellBlocks = (section: string) =>
  codeBlocks(README).filter((b) => b.section === section && b.language === "sh");

describe("README references", () => {
  it("every npm script it names exists", () => {
    const scripts = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")).scripts;
    const named = [...README.matchAll(/npm run ([a-z][a-z0-9:-]*)/g)].map((m) => m[1] as string);
    expect(named.length).toBeGreaterThan(5);
    for (const name of new Set(named)) expect(scripts, `npm run ${name}`).toHaveProperty(name);
    for (const name of ["start", "test"]) expect(scripts).toHaveProperty(name);
  });

  it("every globalvm command it names answers --help", async () => {
    const commands = new Set<string>();
    for (const match of README.matchAll(/npx globalvm((?: [a-z][a-z-]*){1,2})/g)) {
      commands.add((match[1] as string).trim());
    }
    expect(commands.size).toBeGreaterThan(8);
    for (const command of commands) {
      const result = await runCli([...command.split(" "), "--help"]);
      expect(result.code, `globalvm ${command} --help: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain(`Usage: globalvm ${command}`);
    }
  }, 120_000);

  it("every file it links to or runs exists", () => {
    const links = [...README.matchAll(/\]\(([^)#:]+)(?:#[^)]*)?\)/g)].map((m) => m[1] as string);
    expect(links.length).toBeGreaterThan(3);
    for (const link of links) expect(existsSync(resolve(REPO_ROOT, link)), link).toBe(true);
    accessSync(join(REPO_ROOT, "scripts/quickstart"), constants.X_OK);
  });

  it("its test command is the one CI runs", () => {
    const [tests] = shellBlocks("Quickstart").filter((b) => b.code.includes("npm test"));
    expect(tests?.code.trim()).toBe("npm test");
    expect(readFileSync(join(REPO_ROOT, ".ci/run"), "utf8")).toMatch(/^npm test\b/m);
  });
});

describe("README quickstart, run as written", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "globalvm-readme-"));
  const example = join(REPO_ROOT, "examples/terraform/quickstart");
  // Terraform writes these into the example; remove them afterwards unless they were there.
  const terraformLeftovers = [
    ".terraform",
    ".terraform.lock.hcl",
    "terraform.tfstate",
    "terraform.tfstate.backup",
  ]
    .map((name) => join(example, name))
    .filter((path) => !existsSync(path));
  const env = { ...process.env, GLOBALVM_DATA_DIR: dataDir, PORT: "0", TF_IN_AUTOMATION: "1" };
  let firstTerminal: ChildProcess | undefined;
  let firstOutput = "";

  afterAll(async () => {
    if (firstTerminal?.exitCode === null && firstTerminal.pid) {
      try {
        process.kill(-firstTerminal.pid, "SIGKILL");
      } catch {
        // The group is already gone.
      }
    }
    killRecordedVms(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
    for (const path of terraformLeftovers) rmSync(path, { recursive: true, force: true });
  }, 60_000);

  it("starts the stack, applies the Terraform quickstart, shows ready guests and the client's answer, destroys, stops", async () => {
    const blocks = shellBlocks("Quickstart").filter((b) => !b.code.includes("npm test"));
    expect(blocks).toHaveLength(3);
    const [start, apply, look] = blocks as [Block, Block, Block];

    // The first terminal: its own process group, so Ctrl-C reaches everything it started.
    firstTerminal = spawn("bash", ["-euo", "pipefail", "-c", start.code], {
      cwd: REPO_ROOT,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const terminal = firstTerminal;
    const exited = new Promise<number | null>((done) => terminal.once("exit", (code) => done(code)));
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`the stack did not come up:\n${firstOutput}`)), 300_000);
      const read = (chunk: Buffer) => {
        firstOutput += chunk;
        if (firstOutput.includes("globalvm is up")) {
          clearTimeout(timer);
          ready();
        }
      };
      terminal.stdout?.on("data", read);
      terminal.stderr?.on("data", read);
      void exited.then((code) => fail(new Error(`scripts/quickstart exited ${code}:\n${firstOutput}`)));
    });

    // The second terminal: one shell, so `eval` and `cd` carry over from block to block.
    // Asynchronous, so the first terminal's output keeps being read meanwhile. Between applying
    // and looking, a user takes the seconds the client's startup-script needs after it is
    // ready; the shell waits for its answer instead.
    const clientAnswered = [
      "for i in $(seq 1 60); do",
      "  npx globalvm vm-group show client | grep -q 'web/answer' && break",
      "  sleep 2",
      "done",
    ].join("\n");
    const { stdout: second } = await execFileAsync(
      "bash",
      ["-euo", "pipefail", "-c", `${apply.code}\n${clientAnswered}\n${look.code}`],
      {
        cwd: REPO_ROOT,
        env,
        encoding: "utf8",
        timeout: 900_000,
        maxBuffer: 64 << 20,
      },
    );
    expect(second).toContain("Apply complete! Resources: 4 added");
    // The first terminal said guests get networks (CI runs as root).
    expect(firstOutput).toMatch(/guest network\s+on:/);
    // curl on the web group's endpoint: both instances answered, from this machine's loopback.
    expect(second).toMatch(/^hello from web-0$/m);
    expect(second).toMatch(/^hello from web-1$/m);
    // vm-group show client: web-0 answered the client across the regions, by its address.
    expect(second).toMatch(/^client-0\s+web\/answer\s+hello from web-0$/m);
    // vm-group show web: two instances, both ready, in us-east.
    const groupLines = second
      .split("\n")
      .filter((line) => /\bus-east-a\b/.test(line) && /\bready\b/.test(line));
    expect(groupLines.length, second).toBeGreaterThanOrEqual(2);
    // image show web: available in both datacenters.
    expect(second).toMatch(/eu-west-a\s.*available/);
    expect(second).toMatch(/us-east-a\s.*available/);
    expect(second).toContain("Destroy complete! Resources: 4 destroyed");

    // Ctrl-C in the first terminal stops the stack and its guests.
    process.kill(-(terminal.pid as number), "SIGINT");
    const code = await Promise.race([
      exited,
      new Promise((done) => setTimeout(() => done("timeout"), 60_000)),
    ]);
    expect(code, firstOutput).toBe(0);
    const guests = execFileSync("ps", ["-eo", "args="], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.includes(dataDir) && line.includes("qemu-system"));
    expect(guests).toEqual([]);
  }, 1_200_000);
});
