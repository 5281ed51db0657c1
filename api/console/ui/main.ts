// The console: sign in with a token (kept in sessionStorage for this tab only), then five views
// chosen by the URL's fragment, each reading the public API and following it live.
import { get, session, whenUnauthenticated } from "./api.ts";
import { h, show } from "./dom.ts";
import type { View } from "./views/common.ts";
import { failure } from "./views/common.ts";
import { groupsView } from "./views/groups.ts";
import { imagesView } from "./views/images.ts";
import { operationsView } from "./views/operations.ts";
import { placementView } from "./views/placement.ts";
import { regionsView } from "./views/regions.ts";

const VIEWS: Record<string, [string, View]> = {
  images: ["Images", imagesView],
  groups: ["VM groups", groupsView],
  operations: ["Operations", operationsView],
  regions: ["Regions", regionsView],
  placement: ["Placement", placementView],
};

let running: AbortController | undefined;

function stop() {
  running?.abort();
  running = undefined;
}

function signInForm(root: HTMLElement, message?: HTMLElement) {
  stop();
  window.onhashchange = null;
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    required: true,
    placeholder: "gvm_…",
  });
  const form = h(
    "form",
    { id: "sign-in", class: "sign-in" },
    h("h2", {}, "Sign in"),
    h(
      "p",
      { class: "muted" },
      "Paste a project token (read scope is enough). It stays in this tab's session storage and is sent only as an Authorization header to this control plane.",
    ),
    h("label", {}, h("span", {}, "token"), input),
    h("button", { type: "submit" }, "Sign in"),
    message ?? null,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.signIn(input.value.trim());
    try {
      await get("/v1/images?page_size=1");
      start(root);
    } catch (error) {
      session.signOut();
      signInForm(root, failure(error));
    }
  });
  show(root, form);
  input.focus();
}

function start(root: HTMLElement) {
  const nav = h("nav", { id: "tabs" });
  const view = h("section", { id: "view" });
  const signOut = h("button", { id: "sign-out", type: "button" }, "Sign out");
  signOut.addEventListener("click", () => {
    session.signOut();
    signInForm(root);
  });
  show(root, h("div", { class: "bar" }, nav, signOut), view);
  const route = () => {
    const name = location.hash.slice(1) in VIEWS ? location.hash.slice(1) : "images";
    show(
      nav,
      Object.entries(VIEWS).map(([key, [label]]) =>
        h("a", { href: `#${key}`, "aria-current": key === name ? "page" : null }, label),
      ),
    );
    stop();
    running = new AbortController();
    (VIEWS[name] as [string, View])[1](view, running.signal);
  };
  window.onhashchange = route;
  route();
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("app");
  if (!root) return;
  whenUnauthenticated(() => {
    session.signOut();
    signInForm(root, h("p", { class: "error", role: "alert" }, "The token was refused; sign in again."));
  });
  if (session.token()) start(root);
  else signInForm(root);
});
