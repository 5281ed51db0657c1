// What the bundled provider is made of. Terraform starts it three times per plan, and
// compiling and running Zod's schemas was most of each start (105 → ~70 ms to the handshake):
// the provider takes the API's defaults and limits from schemas/plain.ts, never from the Zod
// schemas, and this keeps it that way. The executable is only the launcher: a launch the
// provider daemon serves reads nothing of the provider itself.
import { resolve } from "node:path";
import { type BuildOptions, build } from "esbuild";
import { describe, expect, it } from "vitest";
import { LAUNCHER_ENTRY, programSource, REPO_ROOT } from "../../provider/build/bundle.ts";

const options: BuildOptions = {
  bundle: true,
  platform: "node",
  format: "cjs",
  minify: true,
  write: false,
  metafile: true,
  logLevel: "silent",
};

describe("the bundled provider", () => {
  it("has no Zod, no Hono and stays small", async () => {
    const result = await build({
      ...options,
      stdin: {
        contents: programSource(resolve(REPO_ROOT, "provider/main.ts")),
        resolveDir: REPO_ROOT,
        loader: "ts",
      },
    });
    const inputs = Object.keys(result.metafile?.inputs ?? {});
    const heavy = inputs.filter((input) => /node_modules\/(zod|@hono|hono|@asteasolutions)\//.test(input));
    const importers = inputs.filter((input) =>
      result.metafile?.inputs[input]?.imports.some((i) => /zod|hono/.test(i.path)),
    );
    expect(heavy, `imported by ${importers.join(", ")}`).toEqual([]);
    expect(inputs.some((input) => input.endsWith("provider/globalvm-provider.ts"))).toBe(true);
    expect(result.outputFiles?.[0]?.contents.length).toBeLessThan(200_000);
  });

  it("has a launcher without the provider's code", async () => {
    const result = await build({ ...options, entryPoints: [LAUNCHER_ENTRY] });
    const inputs = Object.keys(result.metafile?.inputs ?? {});
    expect(
      inputs.filter((input) => /provider\/(framework|resources|cty|protocol)\/|session\.ts/.test(input)),
    ).toEqual([]);
    expect(result.outputFiles?.[0]?.contents.length).toBeLessThan(20_000);
  });
});
