// Operations: those still running followed live, with their step, bytes and per-datacenter
// children; the latest finished ones below, read again each time the running ones change.
import { all, type Schemas, watch } from "../api.ts";
import { ago, badge, type Child, h, progress, show, table } from "../dom.ts";
import { failure, type View } from "./common.ts";

type Operation = Schemas["Operation"];
const FINISHED_SHOWN = 30;

export const operationsView: View = (root, signal) => {
  const status = h("div", { class: "status" });
  const running = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const finished = h("div", {});
  show(
    root,
    h("h2", {}, "Operations"),
    status,
    h("h3", {}, "Running"),
    running,
    h("h3", {}, "Finished"),
    finished,
  );
  const onError = (error: unknown) => show(status, failure(error));
  let names = new Map<string, string>();
  let reading = Promise.resolve();
  watch<Schemas["OperationPage"]>(
    "/v1/operations?done=false&page_size=200",
    (page) => {
      show(status);
      show(
        running,
        page.items.length === 0
          ? h("p", { class: "muted" }, "None.")
          : page.items.map((op) => operation(op, names)),
      );
      // Targets' names and the finished list, read again once the running set changed.
      reading = reading.then(async () => {
        try {
          const [images, groups, done] = await Promise.all([
            all<Schemas["Image"]>("/v1/images?page_size=200", signal),
            all<Schemas["VmGroup"]>("/v1/vm-groups?page_size=200", signal),
            all<Operation>("/v1/operations?done=true&page_size=200", signal),
          ]);
          names = new Map([...images, ...groups].map((t) => [t.id, t.name]));
          show(
            running,
            page.items.length === 0
              ? h("p", { class: "muted" }, "None.")
              : page.items.map((op) => operation(op, names)),
          );
          const latest = done.slice(-FINISHED_SHOWN).reverse();
          show(
            finished,
            latest.length === 0
              ? h("p", { class: "muted" }, "None.")
              : latest.map((op) => operation(op, names)),
          );
        } catch (error) {
          if (!signal.aborted) onError(error);
        }
      });
    },
    onError,
    signal,
  );
};

function operation(op: Operation, names: Map<string, string>): Child {
  const p = op.progress;
  return h(
    "article",
    { class: "operation", "data-operation": op.id, "data-kind": op.kind, "data-state": op.state },
    h(
      "h4",
      {},
      `${op.kind} `,
      h("span", {}, `${op.target.type} ${names.get(op.target.id) ?? op.target.id}`),
      " ",
      badge(op.state),
    ),
    h(
      "p",
      { class: "muted" },
      h("code", {}, op.id),
      ` · started ${ago(op.created_at)} · updated ${ago(op.updated_at)}`,
    ),
    p.step || p.bytes_total
      ? h(
          "p",
          {},
          p.step ? ["step ", h("strong", { class: "step" }, p.step), " "] : null,
          p.bytes_total ? progress(p.bytes_done, p.bytes_total) : null,
        )
      : null,
    p.children.length > 0
      ? table(
          ["datacenter", "step", "bytes"],
          p.children.map((child) => [
            child.datacenter,
            child.step ?? "",
            child.bytes_total ? progress(child.bytes_done, child.bytes_total) : "",
          ]),
          { class: "children" },
        )
      : null,
    op.error ? h("p", { class: "error" }, `${op.error.code}: ${op.error.message}`) : null,
    op.result ? h("pre", { class: "result" }, JSON.stringify(op.result, null, 2)) : null,
  );
}
