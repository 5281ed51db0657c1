// The API reference renderer (api/docs/render.ts): every operation and schema of the control
// plane's own document appears with what a client needs, everything is escaped, nothing is remote.
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../../api/app.ts";
import { SCRIPT, STYLESHEET } from "../../../api/docs/assets.ts";
import { escapeHtml, prose } from "../../../api/docs/html.ts";
import { operationsOf, type ReferenceDocument, renderReference } from "../../../api/docs/render.ts";
import type { Services } from "../../../api/env.ts";

const LINKS = {
  stylesheet: "/docs/reference.css?v=a",
  script: "/docs/reference.js?v=b",
  document: "/openapi.json",
};

/** The control plane's document, as `/openapi.json` serves it (no catalog is needed for it). */
async function controlPlaneDocument(): Promise<any> {
  const app = createApp({} as Services, { log: () => {} });
  return (await app.request("/openapi.json")).json();
}

/** The HTML of one element, from its opening tag (found by id) to its closing tag. */
function element(html: string, tag: string, id: string): string {
  const start = html.indexOf(`id="${id}"`);
  expect(start, `#${id}`).toBeGreaterThan(0);
  return html.slice(html.lastIndexOf(`<${tag}`, start), html.indexOf(`</${tag}>`, start));
}

describe("the API reference page", () => {
  let document: any;
  let html: string;
  beforeAll(async () => {
    document = await controlPlaneDocument();
    html = renderReference(document, LINKS);
  });

  it("shows every operation of the control plane under its tag, with its parameters, request fields and responses", () => {
    const schemas = document.components.schemas;
    const fieldsOf = (schema: any): string[] => {
      if (schema.$ref) return fieldsOf(schemas[schema.$ref.split("/").pop()]);
      if (schema.allOf) return schema.allOf.flatMap(fieldsOf);
      return Object.keys(schema.properties ?? {});
    };
    const operations = operationsOf(document);
    expect(operations.length).toBeGreaterThanOrEqual(28);
    expect(html.match(/<article class="op"/g)?.length).toBe(operations.length);
    for (const { method, path, id, op: operation } of operations) {
      const op = operation as any;
      const article = element(html, "article", `op-${id}`);
      expect(article, id).toContain(`<span class="method ${method}">${method.toUpperCase()}</span>`);
      expect(article, id).toContain(`<code class="path">${escapeHtml(path)}</code>`);
      expect(article, id).toContain(escapeHtml(op.summary));
      if (op.description) expect(article, id).toContain(prose(op.description));
      for (const parameter of op.parameters ?? []) {
        expect(article, `${id} ${parameter.name}`).toContain(`<code class="name">${parameter.name}</code>`);
        expect(article, `${id} ${parameter.name}`).toContain(`<td>${parameter.in}</td>`);
      }
      const body = op.requestBody?.content?.["application/json"]?.schema;
      if (body) {
        expect(article, id).toContain("Request body");
        for (const field of fieldsOf(body)) expect(article, `${id} .${field}`).toContain(`>${field}</code>`);
      }
      for (const status of Object.keys(op.responses))
        expect(article, `${id} ${status}`).toContain(`>${status}</span>`);
      expect(article, id).toContain("application/problem+json");
      expect(article, id).toContain(
        "Security: <strong>bearer</strong>: <code>Authorization: Bearer</code> token",
      );
      const section = html.slice(
        html.lastIndexOf('<section class="tag group"', html.indexOf(`id="op-${id}"`)),
      );
      expect(section.slice(0, 200), id).toContain(`<h2>${escapeHtml(op.tags[0])}</h2>`);
    }
  });

  it("shows every component schema with its fields, and links each reference to it", () => {
    for (const [name, schema] of Object.entries<any>(document.components.schemas)) {
      const article = element(html, "article", `schema-${name}`);
      for (const field of Object.keys(schema.properties ?? {}))
        expect(article, `${name}.${field}`).toContain(`>${field}</code>`);
    }
    for (const [, target] of html.matchAll(/href="#(schema-[^"]+)"/g))
      expect(html).toContain(`id="${target}"`);
    for (const [, target] of html.matchAll(/href="#(op-[^"]+)"/g)) expect(html).toContain(`id="${target}"`);
  });

  it("loads nothing but its own stylesheet and script, and names no URL the document does not", () => {
    const documentText = JSON.stringify(document);
    for (const [url] of html.matchAll(/https?:\/\/[^\s"'<>&]*/gi)) expect(documentText, url).toContain(url);
    const references = [...html.matchAll(/\b(?:src|href|action|srcset)\s*=\s*"([^"]*)"/gi)].map((m) => m[1]);
    expect(references.length).toBeGreaterThan(100);
    // Same-origin paths and anchors only; the one exception is an empty icon (no /favicon.ico asked).
    for (const reference of references) expect(reference).toMatch(/^(#|\/(?!\/)|data:,$)/);
    expect([...html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0])).toEqual([
      `<script src="${LINKS.script}" defer>`,
    ]);
    expect([...html.matchAll(/<link\b[^>]*>/g)].map((m) => m[0])).toEqual([
      '<link rel="icon" href="data:,">',
      `<link rel="stylesheet" href="${LINKS.stylesheet}">`,
    ]);
    expect(html).not.toMatch(/<(iframe|img|object|embed|style|base)\b|\son[a-z]+=/i);
    expect(`${STYLESHEET}${SCRIPT}`).not.toMatch(/https?:|@import|url\(|fetch|XMLHttpRequest|\/\//);
  });

  it("renders nested objects, arrays, maps, enums, defaults, nullable references and extensions", () => {
    const page = renderReference(
      {
        paths: {
          "/v1/things": {
            post: {
              operationId: "createThing",
              summary: "Make a thing",
              requestBody: {
                required: true,
                content: { "application/json": { schema: { $ref: "#/components/schemas/CreateThing" } } },
              },
              responses: { "204": { description: "Made." } },
            },
          },
        },
        components: {
          schemas: {
            CreateThing: {
              type: "object",
              required: ["size"],
              properties: {
                size: { type: "integer", minimum: 1, maximum: 9, description: "How big." },
                mode: { type: "string", enum: ["fast", "safe"], default: "safe" },
                limits: { type: "object", properties: { cpu: { type: "integer", description: "Cores." } } },
                disks: {
                  type: "array",
                  items: { type: "object", required: ["gb"], properties: { gb: { type: "integer" } } },
                },
                labels: { type: "object", additionalProperties: { type: "string" } },
                parent: { allOf: [{ $ref: "#/components/schemas/Base" }, { type: ["object", "null"] }] },
                note: { type: ["string", "null"] },
              },
            },
            Base: {
              type: "object",
              properties: { id: { type: "string", format: "uuid" } },
              required: ["id"],
            },
            Thing: {
              allOf: [{ $ref: "#/components/schemas/Base" }, { type: "object", properties: { extra: {} } }],
            },
          },
        },
      },
      LINKS,
    );
    const op = element(page, "article", "op-createThing");
    expect(op).toContain(
      '<code class="name">size</code> <span class="type">integer</span> <span class="req">required</span>',
    );
    expect(op).toContain('<p class="desc">How big.</p><div class="meta">value 1–9</div>');
    expect(op).toContain(
      "one of <code>&quot;fast&quot;</code>, <code>&quot;safe&quot;</code> · default <code>&quot;safe&quot;</code>",
    );
    expect(op).toMatch(
      />limits<\/code> <span class="type">object<\/span><ul class="fields"><li><code class="name">cpu<\/code>.*Cores\./,
    );
    expect(op).toMatch(
      />disks<\/code> <span class="type">array of object<\/span><ul class="fields"><li><code class="name">gb<\/code> <span class="type">integer<\/span> <span class="req">required/,
    );
    expect(op).toContain('>labels</code> <span class="type">map of string to string</span>');
    expect(op).toContain(
      '>parent</code> <span class="type"><a class="ref" href="#schema-Base">Base</a> | null</span>',
    );
    expect(op).toContain('>note</code> <span class="type">string | null</span>');
    expect(op).toContain('<span class="status s2xx">204</span></td><td><p class="desc">Made.</p></td>');
    expect(op).toContain("No token needed.");
    const thing = element(page, "article", "schema-Thing");
    expect(thing).toContain('Includes the fields of <a class="ref" href="#schema-Base">Base</a>');
    expect(thing).toContain(
      '<code class="name">id</code> <span class="type">string (uuid)</span> <span class="req">required</span>',
    );
    expect(thing).toContain('<code class="name">extra</code> <span class="type">any</span>');
  });

  it("escapes every text of the document", () => {
    const evil = `<script>alert("x")</script><img src=x onerror='alert(1)'>&amp;`;
    const document: ReferenceDocument = {
      info: { title: evil, version: evil, description: `${evil} \`${evil}\`` },
      tags: [{ name: evil, description: evil }],
      paths: {
        [`/v1/${evil}`]: {
          get: {
            operationId: evil,
            tags: [evil],
            summary: evil,
            description: evil,
            security: [{ [evil]: [evil] }],
            parameters: [
              {
                name: evil,
                in: "query",
                description: evil,
                schema: { type: evil, enum: [evil], default: evil },
              },
            ],
            requestBody: {
              description: evil,
              content: { [evil]: { schema: { $ref: `#/components/schemas/${evil}` } } },
            },
            responses: {
              [evil]: {
                description: evil,
                headers: { [evil]: { description: evil, schema: { type: "string" } } },
              },
            },
          },
        },
      },
      components: {
        securitySchemes: { [evil]: { type: evil } },
        schemas: {
          [evil]: {
            description: evil,
            properties: {
              [evil]: { type: "string", description: evil, pattern: evil, example: evil, format: evil },
            },
          },
        },
      },
    };
    const page = renderReference(document, LINKS);
    expect(page).not.toContain("<script>");
    expect(page).not.toContain("<img");
    expect(page).not.toContain("'alert");
    expect(page).toContain(
      "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;amp;",
    );
    expect(page.match(/<script\b/g)?.length).toBe(1);
    for (const [, id] of page.matchAll(/\sid="([^"]*)"/g)) expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(page.match(/<article class="op"/g)?.length).toBe(1);
  });

  it("writes descriptions as text: code spans and paragraphs, nothing else of Markdown", () => {
    expect(prose("Use `a<b>` here.\n\nThen [link](javascript:alert(1)) <b>bold</b>")).toBe(
      '<p class="desc">Use <code>a&lt;b&gt;</code> here.</p>' +
        '<p class="desc">Then [link](javascript:alert(1)) &lt;b&gt;bold&lt;/b&gt;</p>',
    );
    expect(prose(undefined)).toBe("");
  });
});
