// The web console (/console) in a real browser — Debian's chromium, headless, driven by
// playwright-core, with every origin but the control plane cut off — against a running stack:
// the image is in eu-west, a VM group is declared in us-east, and the images × datacenters
// matrix shows us-east's cell go from missing through transferring, its bytes rising, to
// available, without a reload; then the group's instance, the operation, the regions and a
// placement explanation. The source's chunks are slowed (test/support/throttled-source.ts) so
// the transfer lasts seconds, not milliseconds.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { type OriginPage, openOriginPage } from "../support/browser.ts";
import { ensureGuestImage } from "../support/compute.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { startThrottledSource, type ThrottledSource } from "../support/throttled-source.ts";

const BYTES_PER_SECOND = 3 << 20;

let stack: Stack;
let source: ThrottledSource;
let browser: OriginPage;
let shots: string;

beforeAll(async () => {
  let controlPlane = "";
  source = await startThrottledSource(() => controlPlane, BYTES_PER_SECOND);
  stack = await startStack({
    name: "console",
    regions: ["eu-west", "us-east"],
    controlPlaneFor: (region, url) => {
      controlPlane = url;
      return region === "eu-west" ? source.controlPlaneUrl : url;
    },
  });
  browser = await openOriginPage(stack.controlPlane, { width: 1400, height: 1000 });
  shots = mkdtempSync(join(tmpdir(), "console-browser-"));
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  await source?.close();
}, 60_000);

interface Seen {
  state: string;
  done: number;
  total: number;
}

async function operationDone(id: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let operation: any;
  while (Date.now() < deadline) {
    operation = (await stack.call("GET", `/v1/operations/${id}?wait=10s`, stack.projectToken)).body;
    if (operation.done) return operation;
  }
  throw new Error(`operation ${id} not done: ${JSON.stringify(operation)}\n${stack.logs()}`);
}

describe("the console in a browser, following a cross-region create live", () => {
  it("shows the replica go missing → transferring (bytes rising) → available, then the group, its operation, regions and a placement", async () => {
    const { page, blocked, problems } = browser;
    const image = await stack.call("POST", "/v1/images", stack.projectToken, {
      name: "guest",
      origin_region: "eu-west",
      format: "qcow2",
    });
    expect(image.status).toBe(201);
    // Straight to the manager: the ticket names the throttling proxy, which only needs to see pulls.
    await uploadImage({
      path: ensureGuestImage(),
      managerUrl: stack.managerUrls["eu-west"] as string,
      token: image.body.upload.token,
      imageId: image.body.id,
      version: 1,
      format: "qcow2",
    });

    // Sign in by pasting the token.
    await page.goto(`${stack.controlPlane}/console`, { waitUntil: "load" });
    await page.fill("#token", stack.projectToken);
    await page.click("#sign-in button[type=submit]");
    const usCell = 'td.cell[data-image="guest"][data-datacenter="us-east-a"]';
    await page.waitForSelector(`${usCell}[data-state="missing"]`, { timeout: 30_000 });
    await page.waitForSelector(
      'td.cell[data-image="guest"][data-datacenter="eu-west-a"][data-state="available"]',
      {
        timeout: 30_000,
      },
    );
    expect(await page.evaluate("location.href")).toBe(`${stack.controlPlane}/console`);
    expect(await page.evaluate("sessionStorage.length")).toBe(1);

    // Everything the us-east cell shows from now on, as the DOM changes; and a mark a reload would erase.
    await page.evaluate(`(() => {
      window.__notReloaded = true;
      window.__seen = [];
      const record = () => {
        const cell = document.querySelector(${JSON.stringify(usCell)});
        if (!cell) return;
        const entry = {
          state: cell.dataset.state,
          done: Number(cell.dataset.bytesDone ?? -1),
          total: Number(cell.dataset.bytesTotal || 0),
        };
        const last = window.__seen[window.__seen.length - 1];
        if (!last || last.state !== entry.state || last.done !== entry.done) window.__seen.push(entry);
      };
      new MutationObserver(record).observe(document.getElementById("view"), { childList: true, subtree: true });
      record();
    })()`);

    const created = await stack.call("POST", "/v1/vm-groups", stack.projectToken, {
      name: "web",
      image: image.body.id,
      region: "us-east",
      size: 1,
      machine: { vcpus: 1, memory_mb: 192 },
      metadata: { role: "web" },
    });
    expect(created.status).toBe(202);
    const operationId = created.body.id as string;

    let seen: Seen[] = [];
    let shotWhileMoving = false;
    const deadline = Date.now() + 240_000;
    while (Date.now() < deadline) {
      seen = await page.evaluate("window.__seen");
      if (!shotWhileMoving && seen.at(-1)?.state === "transferring" && (seen.at(-1)?.done ?? 0) > 0) {
        shotWhileMoving = true;
        await page.screenshot({ path: join(shots, "1-matrix-transferring.png") });
      }
      if (seen.at(-1)?.state === "available") break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await page.screenshot({ path: join(shots, "2-matrix-available.png") });
    const context = `seen ${JSON.stringify(seen)}\n${stack.logs()}`;
    expect(seen[0]?.state, context).toBe("missing");
    expect(seen.at(-1)?.state, context).toBe("available");
    const moving = seen.filter((s) => s.state === "transferring");
    const partial = moving.filter((s) => s.done > 0 && s.done < s.total);
    // Bytes rising: at least two different partial counts, never going back.
    expect(new Set(partial.map((s) => s.done)).size, context).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < moving.length; i++) {
      expect(moving[i]?.done, context).toBeGreaterThanOrEqual(moving[i - 1]?.done as number);
    }
    expect(seen.indexOf(partial[0] as Seen), context).toBeLessThan(seen.length - 1);
    expect(await page.evaluate("window.__notReloaded"), "the page was not reloaded").toBe(true);
    const cellText = (await page.locator(usCell).textContent()) ?? "";
    expect(cellText).toContain("v1");
    const localId = (
      await stack.call("GET", `/v1/images/${image.body.id}`, stack.projectToken)
    ).body.replicas.find((r: { datacenter: string }) => r.datacenter === "us-east-a")?.local_id;
    expect(localId).toBeTruthy();
    expect(cellText).toContain(localId);

    // A group that takes a value from web's first instance.
    const client = await stack.call("POST", "/v1/vm-groups", stack.projectToken, {
      name: "client",
      image: image.body.id,
      region: "eu-west",
      size: 1,
      machine: { vcpus: 1, memory_mb: 192 },
      metadata_from: { peer_dc: { vm_group: created.body.target.id, instance: 0, attribute: "datacenter" } },
    });
    expect(client.status, JSON.stringify(client.body)).toBe(202);

    // The group, its instance in us-east, live until it is ready.
    await page.click('nav a[href="#groups"]');
    const group = page.locator('article[data-group="web"]');
    await group.locator("table.instances").waitFor({ timeout: 60_000 });
    expect(await group.locator("table.instances").textContent()).toContain("us-east-a");
    expect(await group.locator("table.metadata").textContent()).toContain("role");
    const operation = await operationDone(operationId, 300_000);
    expect(operation.state, JSON.stringify(operation)).toBe("succeeded");
    await group.locator('table.instances .badge[data-state="ready"]').waitFor({ timeout: 30_000 });
    await group.locator('h3 .badge[data-state="ready"]').waitFor({ timeout: 30_000 });
    // Where client's metadata comes from, and the value it has now.
    const from = page.locator('article[data-group="client"] table.metadata-from');
    await from.waitFor({ timeout: 30_000 });
    const fromText = (await from.textContent()) ?? "";
    expect(fromText).toContain("peer_dc");
    expect(fromText).toContain("web-0 · datacenter");
    expect(fromText).toContain("us-east-a");
    await page.screenshot({ path: join(shots, "3-groups.png"), fullPage: true });

    // The operation, with its per-datacenter child.
    await page.click('nav a[href="#operations"]');
    const shown = page.locator(`article[data-operation="${operationId}"][data-state="succeeded"]`);
    await shown.waitFor({ timeout: 30_000 });
    expect(await shown.textContent()).toContain("create-vm-group");
    expect(await shown.textContent()).toContain("vm-group web");
    await page.screenshot({ path: join(shots, "4-operations.png") });

    // Regions and datacenters with their health and capacity.
    await page.click('nav a[href="#regions"]');
    for (const region of ["eu-west", "us-east"]) {
      const card = page.locator(`article[data-region="${region}"]`);
      await card.locator('.badge[data-state="up"]').waitFor({ timeout: 30_000 });
      expect(await card.locator("table.datacenters").textContent()).toContain("free of");
    }

    // Placement explain: both datacenters, each with its outcome and reasons.
    await page.click('nav a[href="#placement"]');
    await page.locator("#explain button[type=submit]").waitFor({ timeout: 30_000 });
    await page.selectOption('#explain select[name="mode"]', "policy");
    await page.click("#explain button[type=submit]");
    const rows = page.locator("#explanation table.candidates tbody tr");
    await rows.nth(1).waitFor({ timeout: 30_000 });
    expect(await rows.count()).toBe(2);
    const explanation = (await page.locator("#explanation").textContent()) ?? "";
    expect(explanation).toContain("Chosen:");
    expect(explanation).toContain("eu-west-a");
    expect(explanation).toContain("us-east-a");
    await page.screenshot({ path: join(shots, "5-placement.png") });
    // A condition nobody meets: the API's 422 lists every candidate refused, with its reasons.
    await page.fill('#explain input[name="min_free_vcpus"]', "100000");
    await page.click("#explain button[type=submit]");
    await page.locator('#explanation .badge[data-state="refused"]').nth(1).waitFor({ timeout: 30_000 });
    expect(await page.locator("#explanation").textContent()).toContain("No datacenter can take it.");
    expect(await page.locator("#explanation table.candidates li").count()).toBeGreaterThanOrEqual(2);
    // That refusal is the one failed answer of the run (the browser logs it twice).
    const refusals = [
      `HTTP 422: ${stack.controlPlane}/v1/placements:explain`,
      "console: Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)",
    ];
    for (const refusal of refusals) {
      expect(problems.filter((p) => p === refusal)).toHaveLength(1);
      problems.splice(problems.indexOf(refusal), 1);
    }

    expect(blocked).toEqual([]);
    expect(problems).toEqual([]);
    console.log(`console screenshots in ${shots}`);
  }, 600_000);
});
