// Runs list: filters, sorting, paging and grouping live in the URL; progress moves live while runs are active.

import { api, isAbort, loadCatalog } from "../api.js";
import { ACTIVE, dateTime, duration, h, parseTime, pct, progressBar, relativeTime, STATUSES, statusBadge } from "../dom.js";

const PAGE_SIZES = [25, 50, 100];
const GROUP_LIMIT = 500; // the API's page limit: groups summarise at most this many runs
const COLUMNS = [
  { key: "name", label: "Name", sort: "name" },
  { key: "status", label: "Status", sort: "status" },
  { key: "progress", label: "Progress", sort: "epochs_done" },
  { key: "dataset", label: "Dataset", sort: "dataset" },
  { key: "model", label: "Model", sort: "model" },
  { key: "method", label: "Method", sort: "preset" },
  { key: "sparsity", label: "Sparsity", sort: "sparsity", num: true },
  { key: "accuracy", label: "Accuracy", sort: "test_acc", num: true },
  { key: "duration", label: "Duration", num: true },
  { key: "created_at", label: "Created", sort: "created_at" },
];
const MAX_OFFSET = 1e9; // the API's bound (a larger one, or 1e400 read as Infinity, was its raw 422)
const SORTS = new Set(["id", ...COLUMNS.filter((c) => c.sort).map((c) => c.sort)].flatMap((key) => [key, `-${key}`]));
// URL parameter -> API parameter; percentages in the URL and the form, fractions in the API.
const TEXT_FILTERS = ["status", "tag", "q", "dataset", "model", "preset"];
const RANGE_FILTERS = [
  ["min_sparsity", "Min sparsity %"], ["max_sparsity", "Max sparsity %"],
  ["min_acc", "Min accuracy %"], ["max_acc", "Max accuracy %"],
];
const POLL_ACTIVE_MS = 2000;
const POLL_IDLE_MS = 10000;

/** Mean and sample standard deviation; null without values. */
export function meanStd(values) {
  if (!values.length) return null;
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.length > 1 ? values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1) : 0;
  return { mean, std: Math.sqrt(variance), n: values.length };
}

// One run has no spread: its value alone, not "± 0.00%", which would read as perfect reproducibility.
const formatMeanStd = (stats) => (!stats ? "—" : stats.n === 1 ? `${(stats.mean * 100).toFixed(2)}% (n = 1)`
  : `${(stats.mean * 100).toFixed(2)} ± ${(stats.std * 100).toFixed(2)}%`);

function runDuration(run, now = Date.now()) {
  const start = parseTime(run.started_at);
  if (!start) return null;
  const end = parseTime(run.finished_at);
  return ((end ? end.getTime() : now) - start.getTime()) / 1000;
}

export async function runsPage(root, ctx) {
  const q = ctx.query;
  // A hand-edited URL (`?sort=bogus&status=nope&offset=-1&min_acc=7`) showed the API's raw 422, a long pattern cut
  // off at the page's edge: what the list cannot use is left out, as an unknown page size already was.
  const state = {
    sort: SORTS.has(q.get("sort")) ? q.get("sort") : "-created_at",
    limit: PAGE_SIZES.includes(Number(q.get("limit"))) ? Number(q.get("limit")) : 25,
    offset: Math.min(MAX_OFFSET, Math.max(0, Math.floor(Number(q.get("offset"))) || 0)),
    group: ["tag", "preset"].includes(q.get("group")) ? q.get("group") : "",
  };
  for (const key of TEXT_FILTERS) state[key] = q.get(key) || "";
  if (state.status && !STATUSES.includes(state.status)) state.status = "";
  for (const [key] of RANGE_FILTERS) {
    const value = q.get(key) ?? "";
    state[key] = value.trim() !== "" && Number(value) >= 0 && Number(value) <= 1 ? value : "";
  }
  const selected = new Set();
  const [catalog, presets] = await Promise.all([
    loadCatalog(),
    api("/api/presets", { signal: ctx.signal }).then((r) => (r.items || []).map((p) => p.name), () => []),
  ]);

  // ---- filters --------------------------------------------------------------------------------------------
  const filterInputs = {};
  // The label beside its control, not around it: a wrapping label would take in the options' text too.
  const filterBox = (key, label, control) => h("div", { class: "filter" }, h("label", { for: `filter-${key}`, text: label }), control);
  const setFilter = (key, value) => { state[key] = value; state.offset = 0; refresh(); };
  const choice = (key, label, values) => {
    const select = h("select", { id: `filter-${key}`, onchange: () => setFilter(key, select.value) },
      h("option", { value: "", text: "any" }), values.map((v) => h("option", { value: v, text: v })));
    if (state[key] && !values.includes(state[key])) select.append(h("option", { value: state[key], text: state[key] }));
    select.value = state[key];
    filterInputs[key] = select;
    return filterBox(key, label, select);
  };
  // One debounce per input: typing in one box must not drop another box's pending change.
  const typing = new Map();
  ctx.onCleanup(() => typing.forEach(clearTimeout));
  const debounce = (key, fn) => {
    clearTimeout(typing.get(key));
    typing.set(key, setTimeout(fn, 250));
  };
  const typed = (key, label, attrs) => {
    const input = h("input", { id: `filter-${key}`, value: state[key], ...attrs });
    input.addEventListener("input", () => debounce(key, () => setFilter(key, input.value.trim())));
    filterInputs[key] = input;
    return filterBox(key, label, input);
  };
  const percentOf = (fraction) => (fraction === "" ? "" : String(Math.round(Number(fraction) * 10000) / 100));
  const ranges = RANGE_FILTERS.map(([key, label]) => {
    const input = h("input", { id: `filter-${key}`, type: "number", min: 0, max: 100, step: "any", inputmode: "decimal",
      value: percentOf(state[key]) });
    input.addEventListener("input", () => {
      debounce(key, () => {
        const v = Number(input.value);
        const ok = input.value.trim() !== "" && Number.isFinite(v) && v >= 0 && v <= 100;
        // "9e" shows in the box but reads as "": marked, and the filter in force is kept rather than dropped.
        const unreadable = Boolean(input.validity?.badInput);
        const bad = unreadable || (input.value.trim() !== "" && !ok);
        input.setAttribute("aria-invalid", String(bad));
        // Said, not only marked: a value out of range dropped the filter and listed every run without a word.
        note.textContent = !bad ? "" : unreadable ? "not a number: the filter in force is kept"
          : "not applied: a percentage from 0 to 100";
        if (!unreadable) setFilter(key, ok ? String(v / 100) : "");
      });
    });
    filterInputs[key] = input;
    const note = h("span", { class: "filter-note", id: `filter-${key}-note`, "aria-live": "polite" });
    input.setAttribute("aria-describedby", note.id);
    return h("div", { class: "filter" }, h("label", { for: `filter-${key}`, text: label }), input, note);
  });
  const groupSelect = h("select", { id: "group-by", onchange: () => { state.group = groupSelect.value; refresh(); } },
    h("option", { value: "", text: "no grouping" }), h("option", { value: "tag", text: "tag" }), h("option", { value: "preset", text: "preset" }));
  groupSelect.value = state.group;

  const wide = window.matchMedia("(min-width: 641px)");
  const moreInUse = Boolean(state.group || ["dataset", "model", "preset"].some((k) => state[k]) || RANGE_FILTERS.some(([k]) => state[k]));
  const compareButton = h("button", { type: "button", class: "primary", disabled: true, onclick: () => {
    ctx.navigate(`/compare?ids=${[...selected].sort((a, b) => a - b).join(",")}`);
  } }, "Compare selected");

  // ---- table ----------------------------------------------------------------------------------------------
  const head = h("tr", {}, h("th", { scope: "col" }, h("span", { class: "visually-hidden", text: "Select" })),
    COLUMNS.map((col) => h("th", { class: col.num ? "num" : "", scope: "col", dataset: col.sort ? { col: col.sort } : {} },
      col.sort ? h("button", { type: "button", class: "sort", text: col.label, onclick: () => {
        state.sort = state.sort === col.sort ? `-${col.sort}` : state.sort === `-${col.sort}` ? col.sort
          : (col.num || col.sort === "created_at" ? `-${col.sort}` : col.sort);
        state.offset = 0;
        refresh();
      } }) : col.label)));
  const tbody = h("tbody");
  const table = h("table", { id: "runs-table" }, h("thead", {}, head), tbody);
  const pagerText = h("span", { class: "muted", "aria-live": "polite" });
  const prev = h("button", { type: "button", onclick: () => { state.offset = Math.max(0, state.offset - state.limit); refresh(); } }, "Previous");
  const next = h("button", { type: "button", onclick: () => { state.offset += state.limit; refresh(); } }, "Next");
  const sizeSelect = h("select", { id: "page-size", "aria-label": "Runs per page",
    onchange: () => { state.limit = Number(sizeSelect.value); state.offset = 0; refresh(); } },
  PAGE_SIZES.map((n) => h("option", { value: n, text: `${n} per page` })));
  sizeSelect.value = String(state.limit);
  const errorBox = h("div", { role: "alert" });
  const groupsBox = h("section", { class: "groups", id: "groups", "aria-label": "Groups", hidden: true });

  root.append(
    h("div", { class: "toolbar" },
      h("h1", { class: "inline", text: "Runs" }),
      h("span", { class: "spacer" }),
      compareButton,
      h("a", { class: "button primary", href: "/runs/new" }, "New run")),
    h("div", { role: "search" },
      h("div", { class: "filters" },
        choice("status", "Status", STATUSES),
        typed("tag", "Tag", { type: "search", placeholder: "tag" }),
        typed("q", "Search", { type: "search", placeholder: "name or strategy" })),
      // On a phone the rest folds away unless one of them is in use; on a wide screen it stays open.
      h("details", { class: "more-filters", open: wide.matches || moreInUse },
        h("summary", { text: "More filters and grouping" }),
        h("div", { class: "filters" },
          choice("dataset", "Dataset", catalog.datasets),
          choice("model", "Model", catalog.models),
          choice("preset", "Preset", presets),
          ranges,
          h("div", { class: "filter" }, h("label", { for: "group-by", text: "Group by" }), groupSelect)))),
    errorBox,
    groupsBox,
    h("div", { class: "table-wrap" }, table),
    h("div", { class: "pager" }, pagerText, sizeSelect, prev, next),
  );

  const rows = new Map(); // run id -> { tr, update }
  let timer = null;
  let inflight = null;

  function filterParams() {
    const params = new URLSearchParams();
    for (const key of [...TEXT_FILTERS, ...RANGE_FILTERS.map(([k]) => k)]) if (state[key]) params.set(key, state[key]);
    return params;
  }

  function syncUrl() {
    const params = filterParams();
    if (state.group) params.set("group", state.group);
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
    // Runs logged by a user's own script (the tracking SDK) read like managed ones, marked as such.
    const kindMarker = run.kind === "tracked" ? h("span", { class: "kind-marker", text: "tracked",
      title: "Logged by the user's own script through the tracking SDK" }) : null;
    // data-label: the column name the narrow layout shows before each cell (the header row is hidden there).
    const cell = (key) => {
      const col = COLUMNS.find((c) => c.key === key);
      return h("td", { class: `c-${key}${col.num ? " num" : ""}`, "data-label": col.label });
    };
    const cells = Object.fromEntries(COLUMNS.filter((c) => c.key !== "name").map((c) => [c.key, cell(c.key)]));
    const bar = progressBar();
    cells.progress.append(bar.el);
    const tr = h("tr", { dataset: { runId: run.id } }, h("td", { class: "c-select" }, box), h("td", { class: "name c-name" }, link, kindMarker, tagList),
      Object.values(cells));
    const update = (r) => {
      link.textContent = r.name;
      link.title = `run ${r.id}`;
      const tags = (r.tags || []).join("\n");
      if (tagList.dataset.tags !== tags) {
        tagList.dataset.tags = tags;
        tagList.replaceChildren(...(r.tags || []).map((tag) => h("button", { type: "button", class: "tag", text: tag,
          title: `Show runs tagged ${tag}`, onclick: () => { filterInputs.tag.value = tag; setFilter("tag", tag); } })));
      }
      cells.status.replaceChildren(statusBadge(r.status));
      bar.update(r);
      cells.dataset.textContent = r.dataset;
      cells.model.textContent = r.model;
      // replaceChildren would write a null as the text "null": the detail line is left out instead.
      cells.method.replaceChildren(...[h("span", { class: "method", text: r.preset || r.strategy }),
        r.preset ? h("span", { class: "method-detail", text: r.strategy }) : null].filter(Boolean));
      cells.sparsity.textContent = pct(r.sparsity);
      cells.accuracy.textContent = pct(r.test_acc, 2);
      cells.accuracy.title = r.best_test_acc === null || r.best_test_acc === undefined ? "" : `best ${pct(r.best_test_acc, 2)}`;
      cells.duration.textContent = duration(runDuration(r));
      cells.created_at.textContent = relativeTime(r.created_at);
      cells.created_at.title = dateTime(r.created_at);
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
      const filtered = filterParams().toString() !== "";
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

  /** Mean ± std of the final accuracy and sparsity of the completed runs in each tag or preset. */
  function renderGroups(page) {
    groupsBox.hidden = !state.group;
    if (!state.group) return;
    const groups = new Map();
    for (const run of page.items) {
      const keys = state.group === "tag" ? (run.tags?.length ? run.tags : ["(no tag)"]) : [run.preset || "(no preset)"];
      for (const key of keys) {
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(run);
      }
    }
    const body = [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([key, runs]) => {
      const done = runs.filter((r) => r.status === "completed");
      const acc = meanStd(done.map((r) => r.test_acc).filter((v) => v !== null && v !== undefined));
      const sparsity = meanStd(done.map((r) => r.sparsity).filter((v) => v !== null && v !== undefined));
      const real = !key.startsWith("(");
      return h("tr", { dataset: { group: key } },
        h("td", { class: "name", "data-label": state.group },
          real ? h("button", { type: "button", class: "tag", text: key, title: `Show only ${state.group} ${key}`,
            onclick: () => { filterInputs[state.group].value = key; setFilter(state.group, key); } }) : key),
        h("td", { class: "num", "data-label": "Runs", text: String(runs.length) }),
        h("td", { class: "num", "data-label": "Completed", text: String(done.length) }),
        h("td", { class: "num c-acc", "data-label": "Accuracy", text: formatMeanStd(acc) }),
        h("td", { class: "num c-sparsity", "data-label": "Sparsity", text: formatMeanStd(sparsity) }));
    });
    const more = page.total > page.items.length ? ` (the newest ${page.items.length} of ${page.total} runs)` : "";
    groupsBox.replaceChildren(
      h("h2", { text: `By ${state.group}: final accuracy and sparsity of completed runs, mean ± std${more}` }),
      h("div", { class: "table-wrap" }, h("table", { id: "groups-table" },
        h("thead", {}, h("tr", {}, ["Group", "Runs", "Completed", "Accuracy", "Sparsity"].map((t, i) =>
          h("th", { scope: "col", class: i ? "num" : "", text: t })))),
        h("tbody", {}, body.length ? body : h("tr", {}, h("td", { colspan: 5, class: "empty", text: "No runs to group." }))))));
  }

  async function refresh() {
    clearTimeout(timer);
    syncUrl();
    renderSortHeaders();
    inflight?.abort();
    const controller = new AbortController();
    inflight = controller;
    ctx.signal.addEventListener("abort", () => controller.abort(), { once: true });
    const params = filterParams();
    for (const [key, value] of Object.entries({ sort: state.sort, limit: state.limit, offset: state.offset })) params.set(key, String(value));
    let active = false;
    try {
      const groupParams = filterParams();
      groupParams.set("limit", String(GROUP_LIMIT));
      const [page, all] = await Promise.all([
        api(`/api/runs?${params}`, { signal: controller.signal }),
        state.group ? api(`/api/runs?${groupParams}`, { signal: controller.signal }) : null,
      ]);
      if (!page.items.length && page.total && state.offset > 0) {
        // An offset past the end (`/?offset=500`, or runs deleted meanwhile) showed "No runs yet" and "501–28 of
        // 28": go to the last page instead.
        state.offset = Math.floor((page.total - 1) / state.limit) * state.limit;
        return refresh();
      }
      errorBox.replaceChildren();
      renderRows(page.items);
      renderGroups(all);
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
