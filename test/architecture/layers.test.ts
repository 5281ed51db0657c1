// The layers docs/architecture.md describes, checked on every relative import of the code: a
// change that makes one point the wrong way, or closes an import circle, fails here.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "../..");
const CODE_DIRS = [
  "api",
  "bench",
  "cli",
  "client",
  "common",
  "provider",
  "regional-manager",
  "schemas",
  "scripts",
];

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts"))
    .map((entry) => relative(ROOT, join(entry.parentPath, entry.name)))
    .filter((file) => !file.includes("/generated/"));
}

/** Every file's relative imports (static, dynamic and type-only), as repository paths. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)["'](\.{1,2}\/[^"']+)["']/gm;
  for (const file of CODE_DIRS.flatMap(sourceFiles)) {
    const text = readFileSync(join(ROOT, file), "utf8");
    const targets = [...text.matchAll(pattern)].map((m) =>
      relative(ROOT, resolve(dirname(join(ROOT, file)), m[1] as string)),
    );
    graph.set(file, targets);
  }
  return graph;
}

/** [importer prefix, prefixes it must not import]: lower layers never reach up. */
const FORBIDDEN: [string, string[]][] = [
  ["schemas/", ["api/", "regional-manager/", "client/", "provider/", "cli/", "common/"]],
  ["common/", ["api/", "regional-manager/", "client/", "provider/", "cli/", "bench/"]],
  ["client/", ["api/", "regional-manager/", "provider/", "cli/", "bench/"]],
  ["api/", ["regional-manager/", "client/", "provider/", "cli/", "bench/"]],
  ["regional-manager/", ["api/", "client/", "provider/", "cli/", "bench/"]],
  ["provider/", ["api/", "regional-manager/", "cli/", "bench/"]],
  ["api/catalog/", ["api/orchestrator/", "api/routes/", "api/app.ts", "api/server.ts"]],
  ["api/orchestrator/", ["api/routes/", "api/app.ts", "api/server.ts"]],
  [
    "regional-manager/store/",
    ["regional-manager/transfer/", "regional-manager/instances/", "regional-manager/service.ts"],
  ],
  [
    "regional-manager/transfer/",
    [
      "regional-manager/instances/",
      "regional-manager/replicas/",
      "regional-manager/app.ts",
      "regional-manager/service.ts",
    ],
  ],
  // The HTTP plumbing every concern builds on knows none of the concerns' apps.
  [
    "regional-manager/http/",
    [
      "regional-manager/instances/",
      "regional-manager/replicas/",
      "regional-manager/metadata/app.ts",
      "regional-manager/transfer/app.ts",
      "regional-manager/app.ts",
      "regional-manager/service.ts",
    ],
  ],
  ["regional-manager/app.ts", ["regional-manager/service.ts"]],
];

/** Programs, not layers: they read flags the way `globalvm serve` does (cli/). */
const ENTRY_POINTS = new Set(["regional-manager/transfer/standalone.ts"]);

function violations(graph: Map<string, string[]>): string[] {
  const found: string[] = [];
  for (const [file, targets] of graph) {
    if (ENTRY_POINTS.has(file)) continue;
    for (const [importer, forbidden] of FORBIDDEN) {
      if (!file.startsWith(importer)) continue;
      for (const target of targets) {
        if (forbidden.some((prefix) => target.startsWith(prefix))) found.push(`${file} → ${target}`);
      }
    }
  }
  return found;
}

/** Each import circle once, as the files around it (Tarjan's strongly connected components). */
function circles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter++);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node) as number, low.get(next) as number));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node) as number, index.get(next) as number));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) found.push(component.sort());
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return found;
}

describe("layers", () => {
  const graph = importGraph();

  it("reads the code's imports", () => {
    expect(graph.size).toBeGreaterThan(200);
    expect(graph.get("api/app.ts")).toContain("api/routes/index.ts");
  });

  it("no layer imports one above it, and neither service imports the other", () => {
    expect(violations(graph)).toEqual([]);
  });

  it("no import circles", () => {
    expect(circles(graph)).toEqual([]);
  });

  it("the checks catch what they are for", () => {
    const broken = new Map(graph);
    broken.set("api/catalog/x.ts", ["api/orchestrator/runner.ts"]);
    broken.set("common/a.ts", ["common/b.ts"]);
    broken.set("common/b.ts", ["common/a.ts"]);
    expect(violations(broken)).toContain("api/catalog/x.ts → api/orchestrator/runner.ts");
    expect(circles(broken)).toContainEqual(["common/a.ts", "common/b.ts"]);
  });
});
