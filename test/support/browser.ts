// Debian's headless chromium (/usr/bin/chromium, from apt; playwright-core never downloads a
// browser) driven by playwright-core, with every request to anywhere but one origin refused
// and recorded, and every failure the page meets collected.
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

export interface OriginPage {
  page: Page;
  context: BrowserContext;
  /** Requests to anywhere but the allowed origin: refused before they left the browser. */
  blocked: string[];
  /** Failed loads, HTTP errors, exceptions, console errors (CSP violations are reported there). */
  problems: string[];
  close(): Promise<void>;
}

/** Starts chromium whose only reachable origin is `origin`; the network beyond is cut twice over. */
export async function openOriginPage(
  origin: string,
  viewport = { width: 1280, height: 2000 },
): Promise<OriginPage> {
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // Anything not on loopback goes to a proxy nobody listens on, and no name resolves.
      "--proxy-server=http://127.0.0.1:9",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ],
  });
  try {
    const context = await browser.newContext({ viewport });
    const blocked: string[] = [];
    const problems: string[] = [];
    await context.route("**/*", async (route) => {
      const url = route.request().url();
      if (new URL(url).origin === origin) return route.continue();
      blocked.push(url);
      return route.abort("blockedbyclient");
    });
    const page = await context.newPage();
    page.on("requestfailed", (request) => {
      const error = request.failure()?.errorText ?? "";
      // Refused above (recorded as blocked), or a fetch the page itself aborted.
      if (blocked.includes(request.url()) || error === "net::ERR_ABORTED") return;
      problems.push(`load failed: ${error} ${request.url()}`);
    });
    page.on("response", (response) => {
      if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
    });
    page.on("pageerror", (error) => problems.push(`exception: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`);
    });
    return {
      page,
      context,
      blocked,
      problems,
      close: () => browser.close(),
    };
  } catch (error) {
    await browser.close();
    throw error;
  }
}
