// What the bundled provider is made of. Terraform starts it three times per plan, and
// compiling and running Zod's schemas was most of each start (105 → ~70 ms to the handshake):
// the provider takes the API's defaults and limits from schemas/plain.ts, never from the Zod
// schemas, and this keeps it that way.
import { resolve } from "node:path";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../provider/build/bundle.ts";

describe("the bundled provider", () => {
  it("has no Zod, no Hono and stays small", async () => {
    const result = await build({
      entryPoints: [resolve(REPO_ROOT, "provider/main.ts")],
      bundle: true,
      platform: "node",
      format: "cjs",
      minify: true,
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    const inputs = Object.keys(result.metafile.inputs);
    const heavy = inputs.filter((input) => /node_modules\/(zod|@hono|hono|@asteasolutions)\//.test(input));
    const importers = inputs.filter((input) =>
      result.metafile.inputs[input]?.imports.some((i) => /zod|hono/.test(i.path)),
    );
    expect(heavy, `imported by ${importers.join(", ")}`).toEqual([]);
    expect(result.outputFiles[0]?.contents.length).toBeLessThan(200_000);
  });
});
