// Images × datacenters: each cell the replica of the image's current version there (its state,
// version and the datacenter's local ID), with its bytes while it transfers; other versions held
// there below it. Followed live.
import { type Schemas, watch } from "../api.ts";
import { badge, type Child, h, progress, show } from "../dom.ts";
import { failure, joined, type View } from "./common.ts";

type Replica = Schemas["ImageReplica"];

export const imagesView: View = (root, signal) => {
  const status = h("div", { class: "status" });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  show(root, h("h2", {}, "Images × datacenters"), status, body);
  const state = joined<{ images: Schemas["ImagePage"]; datacenters: Schemas["DatacenterPage"] }>(
    ["images", "datacenters"],
    ({ images, datacenters }) => {
      show(status);
      show(body, matrix(images.items, datacenters.items));
    },
  );
  const onError = (error: unknown) => show(status, failure(error));
  watch<Schemas["ImagePage"]>("/v1/images?page_size=200", (v) => state.set("images", v), onError, signal);
  watch<Schemas["DatacenterPage"]>(
    "/v1/datacenters?page_size=200",
    (v) => state.set("datacenters", v),
    onError,
    signal,
  );
};

function matrix(images: Schemas["Image"][], datacenters: Schemas["Datacenter"][]): Child {
  if (images.length === 0) return h("p", { class: "muted" }, "No images in this project yet.");
  const sorted = [...datacenters].sort(
    (a, b) => a.region.localeCompare(b.region) || a.name.localeCompare(b.name),
  );
  return h(
    "table",
    { class: "matrix", id: "matrix" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "image"),
        sorted.map((dc) => h("th", {}, dc.name, h("div", { class: "muted" }, dc.region))),
      ),
    ),
    h(
      "tbody",
      {},
      images.map((image) =>
        h(
          "tr",
          { "data-image": image.name },
          h(
            "th",
            { scope: "row" },
            h("div", {}, image.name),
            h("code", { class: "muted" }, image.id),
            h(
              "div",
              { class: "muted" },
              image.version === null ? "not uploaded" : `current v${image.version}`,
            ),
          ),
          sorted.map((dc) => cell(image, dc.name)),
        ),
      ),
    ),
  );
}

function cell(image: Schemas["Image"], datacenter: string): HTMLTableCellElement {
  const held = image.replicas
    .filter((r) => r.datacenter === datacenter)
    .sort((a, b) => b.version - a.version);
  const main = held.find((r) => r.version === image.version) ?? held[0];
  const attrs = { "data-image": image.name, "data-datacenter": datacenter, class: "cell" };
  if (!main) return h("td", { ...attrs, "data-state": "missing" }, h("span", { class: "muted" }, "missing"));
  return h(
    "td",
    {
      ...attrs,
      "data-state": main.state,
      "data-version": main.version,
      "data-bytes-done": main.bytes_done,
      "data-bytes-total": main.bytes_total ?? "",
    },
    replicaLine(main),
    held.filter((r) => r !== main).map((r) => h("div", { class: "other" }, replicaLine(r))),
  );
}

function replicaLine(replica: Replica): Child {
  const moving = replica.state === "transferring" || replica.state === "pending";
  return [
    badge(replica.state),
    ` v${replica.version} `,
    h("span", { class: "muted" }, replica.reason),
    replica.local_id ? h("div", {}, h("code", { title: "local ID" }, replica.local_id)) : null,
    moving ? h("div", {}, progress(replica.bytes_done, replica.bytes_total)) : null,
  ];
}
