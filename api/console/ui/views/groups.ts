// VM groups: each with its instances (state, datacenter, addresses, version), its endpoints, its
// metadata, and for each metadata_from key the instance and attribute the value comes from and
// the value that instance has now. Followed live.
import { type Schemas, watch } from "../api.ts";
import { badge, type Child, h, show, table } from "../dom.ts";
import { failure, joined, type View } from "./common.ts";

type Group = Schemas["VmGroup"];
type Instance = Schemas["Instance"];

export const groupsView: View = (root, signal) => {
  const status = h("div", { class: "status" });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  show(root, h("h2", {}, "VM groups"), status, body);
  const state = joined<{
    groups: Schemas["VmGroupPage"];
    instances: Schemas["InstancePage"];
    images: Schemas["ImagePage"];
  }>(["groups", "instances", "images"], ({ groups, instances, images }) => {
    show(status);
    const imageNames = new Map(images.items.map((i) => [i.id, i.name]));
    show(
      body,
      groups.items.length === 0
        ? h("p", { class: "muted" }, "No VM groups in this project yet.")
        : groups.items.map((g) => group(g, groups.items, instances.items, imageNames)),
    );
  });
  const onError = (error: unknown) => show(status, failure(error));
  watch<Schemas["VmGroupPage"]>(
    "/v1/vm-groups?page_size=200",
    (v) => state.set("groups", v),
    onError,
    signal,
  );
  watch<Schemas["InstancePage"]>(
    "/v1/instances?page_size=200",
    (v) => state.set("instances", v),
    onError,
    signal,
  );
  watch<Schemas["ImagePage"]>("/v1/images?page_size=200", (v) => state.set("images", v), onError, signal);
};

/** Its datacenter; a regional group's region, distribution and the datacenters it spans. */
function whereIs(g: Group): string {
  if (g.distribution) {
    const spans = g.datacenters.length > 0 ? g.datacenters.join(", ") : "not placed yet";
    return `${g.region} (${g.distribution}): ${spans}`;
  }
  return g.datacenter ?? (g.region ? `${g.region} (not placed yet)` : "not placed yet");
}

function group(g: Group, groups: Group[], instances: Instance[], imageNames: Map<string, string>): Child {
  const own = instances.filter((i) => i.vm_group_id === g.id).sort((a, b) => a.ordinal - b.ordinal);
  const where = whereIs(g);
  const image = g.image_family
    ? `family ${g.image_family} (${imageNames.get(g.image) ?? g.image})`
    : (imageNames.get(g.image) ?? g.image);
  return h(
    "article",
    { class: "group", "data-group": g.name },
    h("h3", {}, g.name, " ", badge(g.state)),
    h(
      "p",
      { class: "muted" },
      h("code", {}, g.id),
      ` · ${where} · image ${image}${g.image_version ? ` pinned v${g.image_version}` : ""} · size ${g.size} · ${g.machine.vcpus} vCPU, ${g.machine.memory_mb} MiB`,
    ),
    g.endpoints.length > 0
      ? h(
          "p",
          { class: "endpoints" },
          "Endpoints: ",
          g.endpoints.map((e) =>
            h(
              "code",
              { "data-port": e.port, "data-datacenter": e.datacenter },
              // A regional group has an address per datacenter: say which is which.
              `${e.port}/${e.protocol} → ${e.address}${g.distribution ? ` (${e.datacenter})` : ""} `,
            ),
          ),
        )
      : g.expose.length > 0
        ? h("p", { class: "muted" }, `Exposes ${g.expose.map((e) => e.port).join(", ")}; no endpoint yet.`)
        : null,
    h("h4", {}, "Instances"),
    own.length === 0
      ? h("p", { class: "muted" }, "No instances.")
      : table(
          ["name", "state", "datacenter", "address", "network IP", "version", "local ID"],
          own.map((i) => [
            i.name,
            [badge(i.state), i.state_reason ? h("div", { class: "muted" }, i.state_reason) : null],
            i.datacenter,
            i.address ?? h("span", { class: "muted" }, "none yet"),
            i.network_ip ?? "",
            i.image_version === null ? "" : `v${i.image_version}`,
            i.local_id ? h("code", {}, i.local_id) : "",
          ]),
          { class: "instances" },
        ),
    Object.keys(g.metadata).length > 0
      ? [
          h("h4", {}, "Metadata"),
          table(
            ["key", "value"],
            Object.entries(g.metadata).map(([k, v]) => [h("code", {}, k), h("code", {}, v)]),
            { class: "metadata" },
          ),
        ]
      : null,
    Object.keys(g.metadata_from).length > 0
      ? [
          h("h4", {}, "Metadata from other groups"),
          table(
            ["key", "comes from", "value now"],
            Object.entries(g.metadata_from).map(([key, ref]) => {
              const source = groups.find((s) => s.id === ref.vm_group);
              const instance = instances.find(
                (i) => i.vm_group_id === ref.vm_group && i.ordinal === ref.instance,
              );
              const value = instance ? attributeValue(instance, ref.attribute) : null;
              return [
                h("code", {}, key),
                `${source?.name ?? ref.vm_group}-${ref.instance} · ${ref.attribute}`,
                value === null ? h("span", { class: "muted" }, "not yet") : h("code", {}, value),
              ];
            }),
            { class: "metadata-from" },
          ),
        ]
      : null,
  );
}

/** What an instance answers for a metadata_from attribute today (null: not yet). */
function attributeValue(instance: Instance, attribute: string): string | null {
  if (attribute === "id") return instance.id;
  if (attribute === "name") return instance.name;
  if (attribute === "datacenter") return instance.datacenter;
  if (attribute === "address") return instance.address;
  const match = /^guest-attributes\/(.+)$/.exec(attribute);
  return match ? (instance.guest_attributes[match[1] as string] ?? null) : null;
}
