// Placement explain: the form asks POST /v1/placements:explain what a VM group would get, and
// shows every candidate datacenter with why it was chosen, passed over or refused.
import { ApiError, all, post, type Schemas } from "../api.ts";
import { bytes, type Child, h, show, table } from "../dom.ts";
import { failure, type View } from "./common.ts";

const STRATEGIES = ["image-locality", "least-loaded", "spread"];

export const placementView: View = (root, signal) => {
  const status = h("div", { class: "status" });
  const form = h("form", { id: "explain", class: "explain" }, h("p", { class: "muted" }, "Loading…"));
  const answer = h("div", { id: "explanation" });
  show(root, h("h2", {}, "Placement explain"), status, form, answer);
  Promise.all([
    all<Schemas["Image"]>("/v1/images?page_size=200", signal),
    all<Schemas["Region"]>("/v1/regions?page_size=200", signal),
  ]).then(
    ([images, regions]) => fill(form, answer, images, regions),
    (error) => show(status, failure(error)),
  );
};

function field(label: string, control: HTMLElement): HTMLElement {
  return h("label", {}, h("span", {}, label), control);
}

function fill(
  form: HTMLFormElement,
  answer: HTMLElement,
  images: Schemas["Image"][],
  regions: Schemas["Region"][],
) {
  const image = h(
    "select",
    { name: "image", required: true },
    images.map((i) => h("option", { value: i.id }, `${i.name}${i.version ? ` (v${i.version})` : ""}`)),
  );
  const version = h("input", { name: "image_version", type: "number", min: 1, placeholder: "current" });
  const mode = h(
    "select",
    { name: "mode" },
    h("option", { value: "region" }, "one region"),
    h("option", { value: "policy" }, "a placement policy"),
  );
  const region = h(
    "select",
    { name: "region" },
    regions.map((r) => h("option", { value: r.name }, r.name)),
  );
  const allowed = h(
    "fieldset",
    { class: "regions" },
    h("legend", {}, "allowed regions"),
    regions.map((r) =>
      h(
        "label",
        {},
        h("input", { type: "checkbox", name: "regions", value: r.name, checked: true }),
        ` ${r.name}`,
      ),
    ),
  );
  const strategy = h(
    "select",
    { name: "strategy" },
    STRATEGIES.map((s) => h("option", { value: s }, s)),
  );
  const minVcpus = h("input", { name: "min_free_vcpus", type: "number", min: 0 });
  const minMemory = h("input", { name: "min_free_memory_mb", type: "number", min: 0 });
  const maxTransfer = h("input", { name: "max_transfer_bytes", type: "number", min: 0 });
  const requireUp = h("input", { name: "require_up", type: "checkbox", checked: true });
  const size = h("input", { name: "size", type: "number", min: 0, value: 1, required: true });
  const vcpus = h("input", { name: "vcpus", type: "number", min: 1, value: 1, required: true });
  const memory = h("input", { name: "memory_mb", type: "number", min: 64, value: 512, required: true });
  const policy = h(
    "div",
    { class: "policy" },
    allowed,
    field("strategy", strategy),
    field("min free vCPUs", minVcpus),
    field("min free memory (MiB)", minMemory),
    field("max transfer (bytes)", maxTransfer),
    h("label", {}, requireUp, " only datacenters that are up"),
  );
  const regionField = field("region", region);
  const sync = () => {
    policy.hidden = mode.value !== "policy";
    regionField.hidden = mode.value !== "region";
  };
  mode.addEventListener("change", sync);
  sync();
  show(
    form,
    field("image", image),
    field("version", version),
    field("place in", mode),
    regionField,
    policy,
    field("size", size),
    field("vCPUs", vcpus),
    field("memory (MiB)", memory),
    h("button", { type: "submit" }, "Explain"),
  );
  const number = (input: HTMLInputElement) => (input.value === "" ? undefined : Number(input.value));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body: Record<string, unknown> = {
      image: image.value,
      size: number(size),
      machine: { vcpus: number(vcpus), memory_mb: number(memory) },
    };
    if (version.value !== "") body.image_version = number(version);
    if (mode.value === "region") body.region = region.value;
    else {
      const conditions: Record<string, unknown> = { require_up: requireUp.checked };
      for (const [name, input] of [
        ["min_free_vcpus", minVcpus],
        ["min_free_memory_mb", minMemory],
        ["max_transfer_bytes", maxTransfer],
      ] as const) {
        if (input.value !== "") conditions[name] = number(input);
      }
      body.placement = {
        regions: [...allowed.querySelectorAll<HTMLInputElement>("input:checked")].map((i) => i.value),
        strategy: strategy.value,
        conditions,
      };
    }
    show(answer, h("p", { class: "muted" }, "Asking…"));
    post<Schemas["PlacementExplanation"]>("/v1/placements:explain", body).then(
      (explanation) => show(answer, explained(explanation.decision, explanation.candidates)),
      (error) => {
        const candidates = error instanceof ApiError ? error.problem.candidates : undefined;
        show(
          answer,
          failure(error),
          Array.isArray(candidates) ? explained(null, candidates as Schemas["PlacementCandidate"][]) : null,
        );
      },
    );
  });
}

function explained(
  decision: Schemas["PlacementExplanation"]["decision"],
  candidates: Schemas["PlacementCandidate"][],
): Child {
  return [
    h(
      "p",
      { class: "decision" },
      decision
        ? ["Chosen: ", h("strong", {}, decision.datacenter), ` (${decision.region})`]
        : "No datacenter can take it.",
    ),
    table(
      ["datacenter", "region", "outcome", "why", "would receive"],
      candidates.map((c) => [
        c.datacenter,
        c.region,
        h("span", { class: "badge", "data-state": c.outcome }, c.outcome),
        h(
          "ul",
          {},
          c.reasons.map((r) => h("li", {}, r)),
        ),
        bytes(c.transfer_bytes),
      ]),
      { class: "candidates" },
    ),
  ];
}
