// Client-side router: each path of the dashboard renders one page module into <main>.

import { comparePage } from "./pages/compare.js";
import { newRunPage } from "./pages/newrun.js";
import { runPage } from "./pages/run.js";
import { runsPage } from "./pages/runs.js";
import { workersPage } from "./pages/workers.js";
import { sweepsPage } from "./pages/sweeps.js";
import { sweepPage } from "./pages/sweep.js";
import { loadCatalog, setTokenPrompt } from "./api.js";
import { plotlyReady } from "./charts.js";
import { h, setStatuses } from "./dom.js";

const ROUTES = [
  { pattern: /^\/$/, page: runsPage, nav: "runs", title: "Runs" },
  { pattern: /^\/runs\/new$/, page: newRunPage, nav: "new", title: "New run" },
  { pattern: /^\/runs\/([^/]+)$/, page: runPage, nav: "runs", title: "Run" }, // after /runs/new; a bad id: "no such run"
  { pattern: /^\/compare$/, page: comparePage, nav: "compare", title: "Compare" },
  { pattern: /^\/workers$/, page: workersPage, nav: "workers", title: "Workers" },
  { pattern: /^\/sweeps$/, page: sweepsPage, nav: "sweeps", title: "Sweeps" },
  { pattern: /^\/sweeps\/([^/]+)$/, page: sweepPage, nav: "sweeps", title: "Sweep" },
];

const main = document.getElementById("app");
let current = null; // { controller, cleanups }

function match(pathname) {
  for (const route of ROUTES) {
    const found = pathname.match(route.pattern);
    if (found) return { route, params: found.slice(1) };
  }
  return null;
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
  // A new page starts at its top, and screen readers start reading there too.
  window.scrollTo(0, 0);
  main.focus({ preventScroll: true });
}

function render() {
  if (current) {
    current.controller.abort();
    for (const fn of current.cleanups.splice(0)) {
      try { fn(); } catch (error) { console.warn("cleanup failed", error); }
    }
  }
  const controller = new AbortController();
  const cleanups = [];
  current = { controller, cleanups };
  const found = match(location.pathname);
  document.querySelectorAll("[data-nav]").forEach((a) => {
    if (found && a.dataset.nav === found.route.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  const root = h("div", { class: "page" });
  main.replaceChildren(root);
  if (!found) {
    document.title = "Not found · prunescope";
    root.append(h("h1", { text: "Page not found" }), h("p", {}, h("a", { href: "/", text: "Back to runs" })));
    return;
  }
  document.title = `${found.route.title} · prunescope`;
  const ctx = {
    params: found.params,
    query: new URLSearchParams(location.search),
    signal: controller.signal,
    navigate,
    onCleanup: (fn) => cleanups.push(fn),
    /** setInterval that stops when the page is left. */
    every(ms, fn) {
      const id = setInterval(fn, ms);
      cleanups.push(() => clearInterval(id));
      return () => clearInterval(id);
    },
    setTitle: (text) => { document.title = `${text} · prunescope`; },
  };
  Promise.resolve(found.route.page(root, ctx)).catch((error) => {
    if (error && error.name === "AbortError") return;
    console.error(error);
    root.append(h("div", { class: "notice error", role: "alert", text: `This page failed to load: ${error.message}` }));
  });
}

// Same-origin links to dashboard pages navigate without a reload; downloads and API links stay normal.
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !match(url.pathname)) return;
  event.preventDefault();
  if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
});

window.addEventListener("popstate", render);

// API token: a banner under the top bar, shown when a write is refused with 401; one prompt at a time.
let tokenRequest = null;
setTokenPrompt(({ refused }) => {
  if (tokenRequest) return tokenRequest;
  tokenRequest = new Promise((resolve) => {
    const input = h("input", { id: "api-token", type: "password", autocomplete: "off", size: 24 });
    const finish = (value) => {
      banner.remove();
      tokenRequest = null;
      resolve(value);
    };
    const banner = h("form", { class: "token-banner", role: "alert", onsubmit: (event) => {
      event.preventDefault();
      if (input.value.trim()) finish(input.value.trim());
    } },
    h("span", { text: refused ? "That API token was refused. " : "This server needs an API token for changes. " }),
    h("label", { for: "api-token", text: "API token" }), input,
    h("button", { type: "submit", class: "primary", text: "Use token" }),
    h("button", { type: "button", text: "Not now", onclick: () => finish(null) }));
    document.querySelector(".topbar").after(banner);
    input.focus();
  });
  return tokenRequest;
});

// Theme: a saved choice wins; otherwise the system's. Charts listen for "themechange" to recolour.
const toggle = document.getElementById("theme-toggle");
const dark = window.matchMedia("(prefers-color-scheme: dark)");
const effectiveTheme = () => document.documentElement.dataset.theme || (dark.matches ? "dark" : "light");
function syncToggle() {
  const next = effectiveTheme() === "dark" ? "light" : "dark";
  toggle.setAttribute("aria-label", `Switch to ${next} theme`);
  toggle.title = `Switch to ${next} theme`;
}
toggle.addEventListener("click", () => {
  const next = effectiveTheme() === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  try { localStorage.setItem("prunescope-theme", next); } catch { /* private mode: not remembered */ }
  syncToggle();
  window.dispatchEvent(new Event("themechange"));
});
dark.addEventListener("change", () => { syncToggle(); window.dispatchEvent(new Event("themechange")); });
syncToggle();

// Statuses come from the API; pages need them from their first frame, so the first render waits for them.
loadCatalog().then(setStatuses, (error) => {
  console.warn("GET /api/options failed", error);
  document.querySelector(".topbar").after(h("div", { class: "notice error", role: "alert",
    text: `The API did not send its catalog (${error.message}); live updates may not stop. Reload to try again.` }));
}).finally(render);

// Fetch the chart library while the user reads the first page, so a run page opens without the wait.
const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 1500));
idle(() => plotlyReady().catch((error) => console.warn(error.message)));
