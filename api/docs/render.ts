// The API reference page, rendered from the control plane's own OpenAPI document: every operation
// grouped by tag (parameters, request body, responses, security) and every component schema.
// Plain functions from the document to HTML; the page loads only the assets named in `assets`.
import { anchor, escapeHtml, prose } from "./html.ts";
import { isSchema, type Schema, Schemas } from "./schema.ts";

/** What the renderer reads of an OpenAPI 3.1 document; anything else in it is ignored. */
export interface ReferenceDocument {
  info?: { title?: string; version?: string; description?: string };
  tags?: { name: string; description?: string }[];
  paths?: Record<string, Record<string, unknown> | undefined>;
  components?: {
    schemas?: Record<string, unknown>;
    parameters?: Record<string, unknown>;
    securitySchemes?: Record<string, unknown>;
  };
  security?: Record<string, string[]>[];
}

/** Where the page finds its stylesheet, its script and the document it was made from. */
export interface ReferenceLinks {
  stylesheet: string;
  script: string;
  document: string;
}

export interface Operation {
  method: string;
  path: string;
  id: string;
  tag: string;
  op: Schema;
  pathParameters: unknown[];
}

const METHODS = ["get", "put", "post", "patch", "delete", "head", "options", "trace"];

/** Every operation of the document, in document order, with its first tag ("other" if none). */
export function operationsOf(document: ReferenceDocument): Operation[] {
  return Object.entries(document.paths ?? {}).flatMap(([path, item]) =>
    Object.entries(item ?? {})
      .filter(([method, op]) => METHODS.includes(method) && isSchema(op))
      .map(([method, op]) => {
        const operation = op as Schema;
        const tags = Array.isArray(operation.tags) ? operation.tags : [];
        return {
          method,
          path,
          id: typeof operation.operationId === "string" ? operation.operationId : `${method} ${path}`,
          tag: typeof tags[0] === "string" ? tags[0] : "other",
          op: operation,
          pathParameters: Array.isArray(item?.parameters) ? item.parameters : [],
        };
      }),
  );
}

export function renderReference(document: ReferenceDocument, links: ReferenceLinks): string {
  const schemas = new Schemas(
    Object.fromEntries(
      Object.entries(document.components?.schemas ?? {}).filter(([, s]) => isSchema(s)),
    ) as Record<string, Schema>,
  );
  const operations = operationsOf(document);
  const groups = groupByTag(document, operations);
  const info = document.info ?? {};
  const title = info.title ?? "API reference";
  const nav = groups
    .map(
      ({ tag, ops }) =>
        `<li class="group"><a href="#${anchor("tag", tag)}">${escapeHtml(tag)}</a><ul>${ops
          .map(
            (o) =>
              `<li data-search="${escapeHtml(searchText(o))}"><a href="#${anchor("op", o.id)}">` +
              `<span class="method ${o.method}">${o.method.toUpperCase()}</span><span>${escapeHtml(o.path)}</span></a></li>`,
          )
          .join("")}</ul></li>`,
    )
    .join("");
  const sections = groups
    .map(
      ({ tag, description, ops }) =>
        `<section class="tag group" id="${anchor("tag", tag)}"><h2>${escapeHtml(tag)}</h2>${prose(description)}` +
        `${ops.map((o) => renderOperation(o, document, schemas)).join("")}</section>`,
    )
    .join("");
  const components = Object.entries(schemas.named)
    .map(
      ([name, schema]) =>
        `<article class="schema" id="${anchor("schema", name)}"><h3>${escapeHtml(name)}</h3>` +
        (schemas.objectView(schema, true) ? "" : `<p class="type">${schemas.typeLabel(schema)}</p>`) +
        `${prose(schema.description)}${schemas.constraints(schema)}${schemas.fields(schema, 0, true)}</article>`,
    )
    .join("");
  return (
    `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} — API reference</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="${escapeHtml(links.stylesheet)}">
<script src="${escapeHtml(links.script)}" defer></script></head>
<body><header><h1>${escapeHtml(title)} <span class="version">${escapeHtml(info.version ?? "")}</span></h1>
${prose(info.description)}<p>${operations.length} operations, ${Object.keys(schemas.named).length} schemas. ` +
    `The OpenAPI document: <a href="${escapeHtml(links.document)}">${escapeHtml(links.document)}</a>.</p>
<input id="filter" type="search" placeholder="Filter operations: method, path, words of the summary" hidden></header>
<div class="layout"><nav><ul>${nav}<li class="group"><a href="#schemas">schemas</a></li></ul></nav>
<main>${sections}<section id="schemas"><h2>schemas</h2>${components}</section></main></div></body></html>
`
  );
}

function groupByTag(document: ReferenceDocument, operations: Operation[]) {
  const groups = new Map<string, { tag: string; description?: string; ops: Operation[] }>();
  for (const tag of document.tags ?? []) groups.set(tag.name, { ...tag, tag: tag.name, ops: [] });
  for (const operation of operations) {
    const group = groups.get(operation.tag) ?? { tag: operation.tag, ops: [] };
    group.ops.push(operation);
    groups.set(operation.tag, group);
  }
  return [...groups.values()].filter((group) => group.ops.length > 0);
}

function searchText(o: Operation): string {
  return [o.method, o.path, o.id, o.tag, o.op.summary].join(" ").toLowerCase();
}

function renderOperation(o: Operation, document: ReferenceDocument, schemas: Schemas): string {
  const { op } = o;
  return (
    `<article class="op" id="${anchor("op", o.id)}" data-search="${escapeHtml(searchText(o))}">` +
    `<h3><span class="method ${o.method}">${o.method.toUpperCase()}</span> <code class="path">${escapeHtml(o.path)}</code></h3>` +
    (typeof op.summary === "string" ? `<p class="summary">${escapeHtml(op.summary)}</p>` : "") +
    prose(op.description) +
    `<p class="opid">Operation <code>${escapeHtml(o.id)}</code>${op.deprecated === true ? " · deprecated" : ""}</p>` +
    renderSecurity(op, document) +
    renderParameters(o, document, schemas) +
    renderRequestBody(op.requestBody, schemas) +
    renderResponses(op.responses, schemas) +
    "</article>"
  );
}

function renderSecurity(op: Schema, document: ReferenceDocument): string {
  const requirements = (Array.isArray(op.security) ? op.security : document.security) ?? [];
  if (requirements.length === 0) return '<p class="security">No token needed.</p>';
  const schemes = document.components?.securitySchemes ?? {};
  const alternatives = requirements.map((requirement) =>
    Object.entries(isSchema(requirement) ? requirement : {})
      .map(([name, scopes]) => {
        const scheme = isSchema(schemes[name]) ? schemes[name] : {};
        const kind =
          scheme.type === "http" && scheme.scheme === "bearer"
            ? "<code>Authorization: Bearer</code> token"
            : escapeHtml(scheme.type ?? "scheme");
        const scopeList =
          Array.isArray(scopes) && scopes.length ? ` (scopes ${scopes.map(escapeHtml).join(", ")})` : "";
        return `<strong>${escapeHtml(name)}</strong>: ${kind}${scopeList}`;
      })
      .join(" and "),
  );
  return `<p class="security">Security: ${alternatives.join(" or ") || "none"}.</p>`;
}

function renderParameters(o: Operation, document: ReferenceDocument, schemas: Schemas): string {
  const resolve = (parameter: unknown): Schema | undefined => {
    if (!isSchema(parameter)) return undefined;
    const ref = parameter.$ref;
    const prefix = "#/components/parameters/";
    if (typeof ref === "string" && ref.startsWith(prefix)) {
      const target = document.components?.parameters?.[ref.slice(prefix.length)];
      return isSchema(target) ? target : undefined;
    }
    return parameter;
  };
  const byKey = new Map<string, Schema>();
  const own = Array.isArray(o.op.parameters) ? o.op.parameters : [];
  for (const parameter of [...o.pathParameters, ...own].map(resolve)) {
    if (parameter) byKey.set(`${parameter.in} ${parameter.name}`, parameter);
  }
  if (byKey.size === 0) return "";
  const rows = [...byKey.values()].map((p) => {
    const schema = isSchema(p.schema) ? p.schema : {};
    const description = p.description ?? schema.description;
    return (
      `<tr><td><code class="name">${escapeHtml(p.name)}</code></td><td>${escapeHtml(p.in)}</td>` +
      `<td class="type">${schemas.typeLabel(schema)}</td>` +
      `<td>${p.required === true || p.in === "path" ? '<span class="req">required</span>' : "optional"}</td>` +
      `<td>${prose(description)}${schemas.constraints(schema)}</td></tr>`
    );
  });
  return (
    '<h4>Parameters</h4><table class="params"><thead><tr><th>Name</th><th>In</th><th>Type</th>' +
    `<th>Required</th><th>Description</th></tr></thead><tbody>${rows.join("")}</tbody></table>`
  );
}

function renderRequestBody(body: unknown, schemas: Schemas): string {
  if (!isSchema(body)) return "";
  const content = isSchema(body.content) ? body.content : {};
  const media = Object.entries(content).map(([type, value]) => {
    const schema = isSchema(value) && isSchema(value.schema) ? value.schema : {};
    const name = schemas.refName(schema);
    return (
      `<p class="media"><code>${escapeHtml(type)}</code>: <span class="type">${schemas.typeLabel(schema)}</span></p>` +
      (name ? prose(schemas.resolve(schema).description) : "") +
      schemas.constraints(schemas.resolve(schema)) +
      schemas.fields(schema, 0, true)
    );
  });
  return (
    `<h4>Request body${body.required === true ? ' <span class="req">required</span>' : ""}</h4>` +
    `${prose(body.description)}<div class="body">${media.join("")}</div>`
  );
}

function renderResponses(responses: unknown, schemas: Schemas): string {
  if (!isSchema(responses)) return "";
  const rows = Object.entries(responses).map(([status, response]) => {
    const r = isSchema(response) ? response : {};
    const content = Object.entries(isSchema(r.content) ? r.content : {}).map(([type, value]) => {
      const schema = isSchema(value) && isSchema(value.schema) ? value.schema : undefined;
      return (
        `<div class="media"><code>${escapeHtml(type)}</code>` +
        (schema
          ? `: <span class="type">${schemas.typeLabel(schema)}</span>${schemas.fields(schema, 1)}`
          : "") +
        "</div>"
      );
    });
    const headers = Object.entries(isSchema(r.headers) ? r.headers : {}).map(([name, header]) => {
      const h = isSchema(header) ? header : {};
      return (
        `<div class="media">Header <code class="name">${escapeHtml(name)}</code>: ` +
        `<span class="type">${schemas.typeLabel(h.schema)}</span>${prose(h.description)}</div>`
      );
    });
    const kind = /^[1-5]/.test(status) ? `s${status[0]}xx` : "sdefault";
    return (
      `<tr><td><span class="status ${kind}">${escapeHtml(status)}</span></td>` +
      `<td>${prose(r.description)}${headers.join("")}${content.join("")}</td></tr>`
    );
  });
  return `<h4>Responses</h4><table class="responses"><tbody>${rows.join("")}</tbody></table>`;
}
