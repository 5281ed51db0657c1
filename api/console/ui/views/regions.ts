// Regions and their datacenters: health (from heartbeats), capacity and what is free, what the
// store holds. Followed live.
import { type Schemas, watch } from "../api.ts";
import { ago, badge, bytes, type Child, h, show, table } from "../dom.ts";
import { failure, joined, type View } from "./common.ts";

export const regionsView: View = (root, signal) => {
  const status = h("div", { class: "status" });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  show(root, h("h2", {}, "Regions and datacenters"), status, body);
  const state = joined<{ regions: Schemas["RegionPage"]; datacenters: Schemas["DatacenterPage"] }>(
    ["regions", "datacenters"],
    ({ regions, datacenters }) => {
      show(status);
      show(
        body,
        regions.items.map((region) =>
          regionCard(
            region,
            datacenters.items.filter((d) => d.region === region.name),
          ),
        ),
      );
    },
  );
  const onError = (error: unknown) => show(status, failure(error));
  watch<Schemas["RegionPage"]>("/v1/regions?page_size=200", (v) => state.set("regions", v), onError, signal);
  watch<Schemas["DatacenterPage"]>(
    "/v1/datacenters?page_size=200",
    (v) => state.set("datacenters", v),
    onError,
    signal,
  );
};

const used = (free: number | undefined, total: number, format: (n: number) => string = String) =>
  free === undefined ? `? free of ${format(total)}` : `${format(free)} free of ${format(total)}`;

function regionCard(region: Schemas["Region"], datacenters: Schemas["Datacenter"][]): Child {
  return h(
    "article",
    { class: "region", "data-region": region.name },
    h(
      "h3",
      {},
      region.name,
      region.display_name !== region.name ? h("span", { class: "muted" }, ` ${region.display_name}`) : null,
    ),
    datacenters.length === 0
      ? h("p", { class: "muted" }, "No datacenter.")
      : table(
          ["datacenter", "health", "vCPUs", "memory", "disk", "images", "chunks"],
          datacenters.map((dc) => [
            dc.name,
            [badge(dc.status), h("div", { class: "muted" }, `heartbeat ${ago(dc.last_heartbeat_at)}`)],
            used(dc.free?.vcpus, dc.capacity.vcpus),
            used(dc.free?.memory_mb, dc.capacity.memory_mb, (n) => `${n} MiB`),
            used(dc.free?.disk_bytes, dc.capacity.disk_bytes, bytes),
            dc.image_count ?? "",
            dc.chunk_count ?? "",
          ]),
          { class: "datacenters" },
        ),
  );
}
