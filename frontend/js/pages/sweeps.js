// Sweeps list: every grid sweep with its runs' status counts and overall progress, refreshed while any runs.

import { api, isAbort } from "../api.js";
import { dateTime, h, isActive, relativeTime, statusBadge } from "../dom.js";

const POLL_ACTIVE_MS = 2000;
const POLL_IDLE_MS = 10000;

/** Badges "completed 3 · running 1" in the API's status order. */
export function statusCounts(counts) {
  return h("span", { class: "status-counts" }, Object.entries(counts || {}).map(([status, n]) => {
    const badge = statusBadge(status);
    badge.textContent = `${status} ${n}`;
    return badge;
  }));
}

/** A progress bar over a fraction in [0, 1] with a percentage under it. */
export function fractionBar(progress, label) {
  const ratio = Math.max(0, Math.min(1, progress || 0));
  const fill = h("span");
  fill.style.setProperty("width", `${(ratio * 100).toFixed(1)}%`);
  return h("div", { class: "progress" },
    h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
      "aria-valuenow": Math.round(ratio * 100), "aria-label": label }, fill),
    h("div", { class: "label", text: `${Math.round(ratio * 100)}% of epochs` }));
}

export async function sweepsPage(root, ctx) {
  const tbody = h("tbody");
  const errorBox = h("div", { role: "alert" });
  root.append(
    h("div", { class: "toolbar" }, h("h1", { class: "inline", text: "Sweeps" }), h("span", { class: "spacer" }),
      h("a", { class: "button primary", href: "/runs/new?sweep=1" }, "New sweep")),
    errorBox,
    h("div", { class: "table-wrap" }, h("table", { id: "sweeps-table" },
      h("thead", {}, h("tr", {}, ["Name", "Runs", "Status", "Progress", "Created"].map((t) => h("th", { scope: "col", text: t })))),
      tbody)));

  let timer = null;
  ctx.onCleanup(() => clearTimeout(timer));

  async function refresh() {
    let active = false;
    try {
      const page = await api("/api/sweeps?limit=200", { signal: ctx.signal });
      errorBox.replaceChildren();
      tbody.replaceChildren(...(page.items.length ? page.items.map((s) => {
        active = active || Object.keys(s.status_counts).some(isActive);
        return h("tr", { dataset: { sweepId: s.id } },
          h("td", { class: "name", "data-label": "Name" }, h("a", { href: `/sweeps/${s.id}`, text: s.name })),
          h("td", { class: "num", "data-label": "Runs", text: String(s.runs_total) }),
          h("td", { "data-label": "Status" }, statusCounts(s.status_counts)),
          h("td", { "data-label": "Progress" }, fractionBar(s.progress, `sweep ${s.id} progress`)),
          h("td", { "data-label": "Created", title: dateTime(s.created_at), text: relativeTime(s.created_at) }));
      }) : [h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No sweeps yet. ",
        h("a", { href: "/runs/new?sweep=1", text: "Start one from the form." })))]));
    } catch (error) {
      if (isAbort(error)) return;
      errorBox.replaceChildren(h("div", { class: "notice error", text: `Could not load sweeps: ${error.message}` }));
    }
    if (!ctx.signal.aborted) timer = setTimeout(refresh, active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }
  await refresh();
}
