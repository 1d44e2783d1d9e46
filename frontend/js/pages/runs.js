// Runs list: filters, sorting and paging live in the URL; progress moves live while runs are active.

import { api, isAbort } from "../api.js";
import { ACTIVE, dateTime, h, pct, progressBar, statusBadge } from "../dom.js";

const STATUSES = ["queued", "running", "completed", "failed", "cancelled"];
const PAGE_SIZES = [25, 50, 100];
const COLUMNS = [
  { key: "name", label: "Name", sort: "name" },
  { key: "status", label: "Status", sort: "status" },
  { key: "progress", label: "Progress", sort: "epochs_done" },
  { key: "strategy", label: "Strategy", sort: "strategy" },
  { key: "sparsity", label: "Sparsity", sort: "sparsity", num: true },
  { key: "best_test_acc", label: "Best acc.", sort: "best_test_acc", num: true },
  { key: "device", label: "Device", sort: "device" },
  { key: "created_at", label: "Created", sort: "created_at" },
];
const POLL_ACTIVE_MS = 2000;
const POLL_IDLE_MS = 10000;

export async function runsPage(root, ctx) {
  const q = ctx.query;
  const state = {
    status: q.get("status") || "",
    tag: q.get("tag") || "",
    q: q.get("q") || "",
    sort: q.get("sort") || "-created_at",
    limit: PAGE_SIZES.includes(Number(q.get("limit"))) ? Number(q.get("limit")) : 25,
    offset: Math.max(0, Number(q.get("offset")) || 0),
  };
  const selected = new Set();

  const statusSelect = h("select", { id: "filter-status", onchange: () => { state.status = statusSelect.value; state.offset = 0; refresh(); } },
    h("option", { value: "", text: "any" }), STATUSES.map((s) => h("option", { value: s, text: s })));
  statusSelect.value = state.status;
  const tagInput = h("input", { id: "filter-tag", type: "search", placeholder: "tag", value: state.tag, size: 10 });
  const textInput = h("input", { id: "filter-q", type: "search", placeholder: "name or strategy", value: state.q, size: 18 });
  let typing = null;
  for (const [input, key] of [[tagInput, "tag"], [textInput, "q"]]) {
    input.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => { state[key] = input.value.trim(); state.offset = 0; refresh(); }, 250);
    });
  }
  ctx.onCleanup(() => clearTimeout(typing));

  const compareButton = h("button", { type: "button", class: "primary", disabled: true, onclick: () => {
    ctx.navigate(`/compare?ids=${[...selected].sort((a, b) => a - b).join(",")}`);
  } }, "Compare selected");

  const head = h("tr", {}, h("th", { scope: "col" }, h("span", { class: "visually-hidden", text: "Select" })),
    COLUMNS.map((col) => {
      const th = h("th", { class: col.num ? "num" : "", scope: "col", dataset: { col: col.sort } },
        h("button", { type: "button", class: "sort", text: col.label, onclick: () => {
          state.sort = state.sort === col.sort ? `-${col.sort}` : state.sort === `-${col.sort}` ? col.sort
            : (col.num || col.sort === "created_at" ? `-${col.sort}` : col.sort);
          state.offset = 0;
          refresh();
        } }));
      return th;
    }));
  const tbody = h("tbody");
  const table = h("table", { id: "runs-table" }, h("thead", {}, head), tbody);
  const pagerText = h("span", { class: "muted", "aria-live": "polite" });
  const prev = h("button", { type: "button", onclick: () => { state.offset = Math.max(0, state.offset - state.limit); refresh(); } }, "Previous");
  const next = h("button", { type: "button", onclick: () => { state.offset += state.limit; refresh(); } }, "Next");
  const sizeSelect = h("select", { id: "page-size", onchange: () => { state.limit = Number(sizeSelect.value); state.offset = 0; refresh(); } },
    PAGE_SIZES.map((n) => h("option", { value: n, text: `${n} per page` })));
  sizeSelect.value = String(state.limit);
  const errorBox = h("div", { role: "alert" });

  root.append(
    h("div", { class: "toolbar" },
      h("h1", { text: "Runs", style: "margin:0" }),
      h("span", { class: "spacer" }),
      h("a", { class: "button primary", href: "/runs/new" }, "New run")),
    h("div", { class: "toolbar", role: "search" },
      h("label", { for: "filter-status" }, "Status", statusSelect),
      h("label", { for: "filter-tag" }, "Tag", tagInput),
      h("label", { for: "filter-q" }, "Search", textInput),
      h("span", { class: "spacer" }),
      compareButton),
    errorBox,
    h("div", { class: "table-wrap" }, table),
    h("div", { class: "pager" }, pagerText, sizeSelect, prev, next),
  );

  const rows = new Map(); // run id -> { tr, update }
  let timer = null;
  let inflight = null;

  function syncUrl() {
    const params = new URLSearchParams();
    if (state.status) params.set("status", state.status);
    if (state.tag) params.set("tag", state.tag);
    if (state.q) params.set("q", state.q);
    if (state.sort !== "-created_at") params.set("sort", state.sort);
    if (state.limit !== 25) params.set("limit", String(state.limit));
    if (state.offset) params.set("offset", String(state.offset));
    const search = params.toString();
    history.replaceState(null, "", search ? `/?${search}` : "/");
  }

  function updateCompare() {
    compareButton.disabled = selected.size < 2;
    compareButton.textContent = selected.size ? `Compare selected (${selected.size})` : "Compare selected";
  }

  function makeRow(run) {
    const box = h("input", { type: "checkbox", "aria-label": `Select run ${run.id} to compare`, checked: selected.has(run.id),
      onchange: () => { if (box.checked) selected.add(run.id); else selected.delete(run.id); updateCompare(); } });
    const link = h("a", { href: `/runs/${run.id}` });
    const tagList = h("span", { class: "tags" });
    // data-label: the column name the narrow layout shows before each cell (the header row is hidden there).
    const cell = (key, extra = "") => h("td", { class: `c-${key} ${extra}`.trim(), "data-label": COLUMNS.find((c) => c.key === key).label });
    const cells = {
      status: cell("status"), progress: cell("progress"), strategy: cell("strategy"), sparsity: cell("sparsity", "num"),
      best_test_acc: cell("best_test_acc", "num"), device: cell("device"), created_at: cell("created_at"),
    };
    const bar = progressBar();
    cells.progress.append(bar.el);
    const tr = h("tr", { dataset: { runId: run.id } }, h("td", { class: "c-select" }, box), h("td", { class: "name c-name" }, link, tagList),
      cells.status, cells.progress, cells.strategy, cells.sparsity, cells.best_test_acc, cells.device, cells.created_at);
    const update = (r) => {
      link.textContent = r.name;
      link.title = `run ${r.id}`;
      const tags = (r.tags || []).join("\n");
      if (tagList.dataset.tags !== tags) {
        tagList.dataset.tags = tags;
        tagList.replaceChildren(...(r.tags || []).map((tag) => h("button", { type: "button", class: "tag", text: tag,
          title: `Show runs tagged ${tag}`, onclick: () => { tagInput.value = tag; state.tag = tag; state.offset = 0; refresh(); } })));
      }
      cells.status.replaceChildren(statusBadge(r.status));
      bar.update(r);
      cells.strategy.textContent = r.strategy;
      cells.sparsity.textContent = pct(r.sparsity);
      cells.best_test_acc.textContent = pct(r.best_test_acc, 2);
      cells.device.textContent = r.worker ? `${r.device} · ${r.worker}` : r.device;
      cells.created_at.textContent = dateTime(r.created_at);
    };
    update(run);
    return { tr, update };
  }

  function renderRows(items) {
    const seen = new Set();
    const ordered = items.map((run) => {
      seen.add(run.id);
      let row = rows.get(run.id);
      if (row) row.update(run);
      else { row = makeRow(run); rows.set(run.id, row); }
      return row.tr;
    });
    for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
    if (!items.length) {
      const filtered = state.status || state.tag || state.q;
      tbody.replaceChildren(h("tr", {}, h("td", { colspan: COLUMNS.length + 1, class: "empty" },
        filtered ? "No runs match these filters." : "No runs yet. ", filtered ? null : h("a", { href: "/runs/new", text: "Start one." }))));
    } else {
      // Re-append only when the order changed, so a live refresh does not disturb focus or selection.
      const same = ordered.length === tbody.children.length && ordered.every((tr, i) => tbody.children[i] === tr);
      if (!same) tbody.replaceChildren(...ordered);
    }
  }

  function renderSortHeaders() {
    for (const th of head.querySelectorAll("th[data-col]")) {
      const col = th.dataset.col;
      if (state.sort === col) th.setAttribute("aria-sort", "ascending");
      else if (state.sort === `-${col}`) th.setAttribute("aria-sort", "descending");
      else th.removeAttribute("aria-sort");
    }
  }

  async function refresh() {
    clearTimeout(timer);
    syncUrl();
    renderSortHeaders();
    inflight?.abort();
    const controller = new AbortController();
    inflight = controller;
    ctx.signal.addEventListener("abort", () => controller.abort(), { once: true });
    const params = new URLSearchParams({ sort: state.sort, limit: String(state.limit), offset: String(state.offset) });
    if (state.status) params.set("status", state.status);
    if (state.tag) params.set("tag", state.tag);
    if (state.q) params.set("q", state.q);
    let active = false;
    try {
      const page = await api(`/api/runs?${params}`, { signal: controller.signal });
      errorBox.replaceChildren();
      renderRows(page.items);
      const end = Math.min(state.offset + page.items.length, page.total);
      pagerText.textContent = page.total ? `${state.offset + 1}–${end} of ${page.total}` : "0 runs";
      prev.disabled = state.offset === 0;
      next.disabled = state.offset + state.limit >= page.total;
      active = page.items.some((r) => ACTIVE.has(r.status));
    } catch (error) {
      if (isAbort(error)) return;
      errorBox.replaceChildren(h("div", { class: "notice error", text: `Could not load runs: ${error.message}` }));
    }
    if (!ctx.signal.aborted) timer = setTimeout(refresh, active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }

  ctx.onCleanup(() => { clearTimeout(timer); inflight?.abort(); });
  updateCompare();
  await refresh();
}
