// `/docs` in a real browser (Debian's chromium, headless) with the network cut to everything but
// the control plane: the page renders every operation, styled, with no failed request or error.
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApi, serveOnLoopback, type TestApi } from "../../support/api.ts";
import { openPage, type Page } from "./chromium.ts";

describe("the API reference in a browser without internet", () => {
  let api: TestApi;
  let server: Awaited<ReturnType<typeof serveOnLoopback>>;
  let page: Page;
  let operationIds: string[];
  beforeAll(async () => {
    api = await createTestApi("pglite");
    server = await serveOnLoopback(api);
    const document = (await api.call("GET", "/openapi.json", { token: null })).body;
    operationIds = Object.values<Record<string, { operationId: string }>>(document.paths).flatMap((item) =>
      Object.values(item).map((op) => op.operationId),
    );
    page = await openPage(server.url);
  });
  afterAll(async () => {
    await page?.close();
    await server?.close();
    await api?.close();
  });

  it("renders every operation, styled, having asked nothing of any other host", async () => {
    // A probe first, from the blank page: the browser really cannot leave the machine.
    await page.evaluate(`fetch("https://cdn.jsdelivr.net/npm/x").catch(() => null)`);
    expect(page.blocked).toEqual(["https://cdn.jsdelivr.net/npm/x"]);
    page.blocked.length = 0;
    page.problems.length = 0;

    await page.open(`${server.url}/docs`);
    const shown = await page.evaluate<string[]>(
      `[...document.querySelectorAll("article.op")].map((a) => a.id)`,
    );
    expect(shown.sort()).toEqual(operationIds.map((id) => `op-${id}`).sort());
    expect(await page.evaluate(`document.querySelectorAll("article.schema").length`)).toBeGreaterThan(20);
    // The stylesheet applied: methods are badges, the navigation sits beside the operations.
    expect(
      await page.evaluate(`getComputedStyle(document.querySelector(".method")).borderTopLeftRadius`),
    ).toBe("4px");
    expect(await page.evaluate(`getComputedStyle(document.querySelector("nav")).position`)).toBe("sticky");
    // The script ran: the filter box shows, and narrows the page to what matches.
    expect(await page.evaluate(`document.getElementById("filter").hidden`)).toBe(false);
    const visible = await page.evaluate<string[]>(`(() => {
      const input = document.getElementById("filter");
      input.value = "createvmgroup";
      input.dispatchEvent(new Event("input"));
      return [...document.querySelectorAll("article.op")].filter((a) => a.checkVisibility()).map((a) => a.id);
    })()`);
    expect(visible).toEqual(["op-createVmGroup"]);
    const sections = await page.evaluate<number>(
      `[...document.querySelectorAll("section.tag")].filter((s) => s.checkVisibility()).length`,
    );
    expect(sections).toBe(1);
    await page.evaluate(`(() => {
      const input = document.getElementById("filter");
      input.value = "";
      input.dispatchEvent(new Event("input"));
    })()`);
    writeFileSync(join(tmpdir(), "docs-reference.png"), await page.screenshot());

    expect(page.blocked).toEqual([]);
    expect(page.problems).toEqual([]);
  }, 60_000);
});
