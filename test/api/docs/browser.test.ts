// `/docs` in a real browser (Debian's chromium, headless, driven by playwright-core) with the
// network cut to everything but the control plane: the page renders every operation, styled, with
// no failed request or error.
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApi, serveOnLoopback, type TestApi } from "../../support/api.ts";
import { type OriginPage, openOriginPage } from "../../support/browser.ts";

describe("the API reference in a browser without internet", () => {
  let api: TestApi;
  let server: Awaited<ReturnType<typeof serveOnLoopback>>;
  let browser: OriginPage;
  let operationIds: string[];
  beforeAll(async () => {
    api = await createTestApi("pglite");
    server = await serveOnLoopback(api);
    const document = (await api.call("GET", "/openapi.json", { token: null })).body;
    operationIds = Object.values<Record<string, { operationId: string }>>(document.paths).flatMap((item) =>
      Object.values(item).map((op) => op.operationId),
    );
    browser = await openOriginPage(server.url);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await api?.close();
  });

  it("renders every operation, styled, having asked nothing of any other host", async () => {
    const { page, blocked, problems } = browser;
    // A probe first, from the blank page: the browser really cannot leave the machine.
    await page.evaluate(`fetch("https://cdn.jsdelivr.net/npm/x").catch(() => null)`);
    expect(blocked).toEqual(["https://cdn.jsdelivr.net/npm/x"]);
    blocked.length = 0;
    problems.length = 0;

    await page.goto(`${server.url}/docs`, { waitUntil: "load" });
    const shown: string[] = await page.evaluate(
      `[...document.querySelectorAll("article.op")].map((a) => a.id)`,
    );
    expect(shown.sort()).toEqual(operationIds.map((id) => `op-${id}`).sort());
    expect(await page.locator("article.schema").count()).toBeGreaterThan(20);
    // The stylesheet applied: methods are badges, the navigation sits beside the operations.
    expect(
      await page.evaluate(`getComputedStyle(document.querySelector(".method")).borderTopLeftRadius`),
    ).toBe("4px");
    expect(await page.evaluate(`getComputedStyle(document.querySelector("nav")).position`)).toBe("sticky");
    // The script ran: the filter box shows, and narrows the page to what matches.
    const filter = page.locator("#filter");
    expect(await filter.isVisible()).toBe(true);
    await filter.fill("createvmgroup");
    const visible: string[] = await page.evaluate(
      `[...document.querySelectorAll("article.op")].filter((a) => a.checkVisibility()).map((a) => a.id)`,
    );
    expect(visible).toEqual(["op-createVmGroup"]);
    const sections: number = await page.evaluate(
      `[...document.querySelectorAll("section.tag")].filter((s) => s.checkVisibility()).length`,
    );
    expect(sections).toBe(1);
    await filter.fill("");
    await page.screenshot({ path: join(tmpdir(), "docs-reference.png") });

    expect(blocked).toEqual([]);
    expect(problems).toEqual([]);
  }, 60_000);
});
