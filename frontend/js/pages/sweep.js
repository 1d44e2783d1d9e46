// One sweep: its grid, each run's progress and result, a parallel-coordinates plot of the varied fields against
// final accuracy and sparsity with the best run marked, and cancel-all.

import { api, ApiError, isAbort } from "../api.js";
import { baseLayout, draw, emptyLayout, plotlyReady, purge } from "../charts.js";
import { confirmDialog, dateTime, h, isActive, loadFailure, pct, plotlyText, progressBar, statusBadge } from "../dom.js";
import { parseId } from "./run.js";
import { fractionBar, statusCounts } from "./sweeps.js";

const POLL_MS = 2000;

/** The grid's combinations in the API's order (the last path varies fastest), one per run. */
export function combinations(grid) {
  let out = [{}];
  for (const [path, values] of Object.entries(grid)) out = out.flatMap((c) => values.map((v) => ({ ...c, [path]: v })));
  return out;
}

const shortName = (path) => path.split(".").slice(-2).join(".");
const show = (value) => (typeof value === "string" ? value : JSON.stringify(value));

/** The axes of the parallel-coordinates plot: one per varied field (choices as ticks), then final sparsity and accuracy. */
export function dimensions(sweep, done) {
  const combos = combinations(sweep.grid);
  const byId = new Map(sweep.runs.map((run, i) => [run.id, combos[i] || {}]));
  const dims = Object.entries(sweep.grid).map(([path, values]) => {
    const numeric = values.every((v) => typeof v === "number");
    if (numeric) return { label: shortName(path), values: done.map((r) => byId.get(r.id)[path]), format: (v) => String(v) };
    const labels = values.map(show);
    return { label: shortName(path), values: done.map((r) => labels.indexOf(show(byId.get(r.id)[path]))), labels };
  });
  const percent = (v) => `${(v * 100).toFixed(1)}%`;
  dims.push({ label: "final sparsity", values: done.map((r) => r.sparsity), format: percent });
  dims.push({ label: "final accuracy", values: done.map((r) => r.test_acc), format: percent });
  return dims;
}

/** Where a value sits on its axis, in [0, 1]: choices evenly spaced, numbers between the axis' min and max. */
function scaler(dim) {
  if (dim.labels) return (v) => (dim.labels.length > 1 ? v / (dim.labels.length - 1) : 0.5);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of dim.values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return (v) => (hi > lo ? (v - lo) / (hi - lo) : 0.5);
}

/**
 * Parallel coordinates drawn with SVG lines, one trace per completed run (the best one green and on top), axes as
 * shapes and their ticks as annotations. Plotly's own `parcoords` is WebGL: its shader compiler evaluates
 * generated code, which the dashboard's Content-Security-Policy (no 'unsafe-eval') refuses.
 */
export function parallelChart(sweep, done, bestId, colours, { width = 1000, narrow = false } = {}) {
  const dims = dimensions(sweep, done);
  // Where axes stand close (a phone, or many varied fields), full titles run into each other: each gets its last
  // path part, tilted, and tick labels are cut to the room between two axes (the full text on hover).
  const spacing = width / Math.max(1, dims.length);
  const tight = narrow || spacing < 130;
  const maxChars = Math.max(4, Math.floor(spacing / 6.5) - 1);
  const cut = (text) => (tight && text.length > maxChars ? `${text.slice(0, maxChars - 1)}…` : text);
  const x = dims.map((_, i) => i);
  const scales = dims.map(scaler);
  const order = done.map((r, i) => i).sort((a, b) => Number(done[a].id === bestId) - Number(done[b].id === bestId));
  const traces = order.map((i) => {
    const run = done[i];
    const best = run.id === bestId;
    const text = dims.map((d) => `${plotlyText(d.label)}: ${plotlyText(d.labels ? d.labels[d.values[i]] : d.format(d.values[i]))}`);
    return { x, y: dims.map((d, k) => scales[k](d.values[i])), mode: "lines+markers", name: `#${run.id}`, showlegend: false,
      line: { color: best ? colours.best : colours.other, width: best ? 3 : 1.5 }, marker: { size: best ? 7 : 5 },
      text, hovertemplate: `#${run.id} ${plotlyText(run.name)}${best ? " (best)" : ""}<br>%{text}<extra></extra>` };
  });
  const ticks = [];
  dims.forEach((d, k) => {
    const values = d.labels ? d.labels.map((label, j) => [j, label])
      : [...new Set(d.values)].sort((a, b) => a - b).map((v) => [v, d.format(v)]);
    const ends = values.length > 6 ? [values[0], values[values.length - 1]] : values; // ends only when crowded
    // Labels closer than about a line apart would print over each other: the lower ones give way, the top end stays.
    const shown = [];
    for (const tick of ends) {
      if (shown.length && scales[k](tick[0]) - scales[k](shown[shown.length - 1][0]) < MIN_TICK_GAP) {
        if (tick === ends[ends.length - 1] && shown.length > 1) shown[shown.length - 1] = tick;
        continue;
      }
      shown.push(tick);
    }
    for (const [v, label] of shown) {
      const text = String(label);
      ticks.push({ x: k, y: scales[k](v), xref: "x", yref: "y", text: plotlyText(cut(text)), showarrow: false, xanchor: "left",
        xshift: 4, font: { size: tight ? 10 : 11, color: colours.muted },
        hovertext: cut(text) !== text ? plotlyText(text) : undefined });
    }
  });
  // Each dimension's title sits above its axis as an annotation: the first starts at its axis and the last ends at
  // its own, so neither sticks out of the chart (Plotly hid a centred first tick label that would have).
  dims.forEach((d, k) => {
    const edge = dims.length > 1 && k === 0 ? "left" : dims.length > 1 && k === dims.length - 1 ? "right" : "center";
    const title = tight ? d.label.split(".").pop() : d.label;
    ticks.push({ x: k, y: 1, xref: "x", yref: "paper", yanchor: "bottom", yshift: 6, showarrow: false,
      xanchor: tight ? "left" : edge, textangle: tight ? TITLE_ANGLE : 0,
      text: plotlyText(title), hovertext: title !== d.label ? plotlyText(d.label) : undefined,
      font: { size: tight ? 11 : 12 }, name: "dimension" });
  });
  const layout = {
    xaxis: { tickvals: x, showticklabels: false, range: [-0.15, dims.length - 0.55],
      showgrid: false, zeroline: false, fixedrange: true },
    yaxis: { visible: false, range: [-0.06, 1.06], fixedrange: true },
    shapes: x.map((k) => ({ type: "line", xref: "x", yref: "y", x0: k, x1: k, y0: 0, y1: 1, layer: "below",
      line: { color: colours.muted, width: 1 } })),
    annotations: ticks, hovermode: "closest",
    meta: { dimensions: dims.map((d) => d.label), tight, runs: done.map((r) => r.id), best: bestId ?? null },
  };
  return { traces, layout, tight };
}

// Tick labels nearer than this (a share of the axis' height) would overlap; tilted titles on close axes.
const MIN_TICK_GAP = 0.07;
const TITLE_ANGLE = -35;
const NARROW = "(max-width: 640px)";

export async function sweepPage(root, ctx) {
  const sweepId = parseId(ctx.params[0]);
  // An id that cannot exist is not asked about: the page says there is no such sweep, as the address names it.
  if (sweepId === null) { loadFailure(root, "sweep", ctx.params[0], null, true); return; }
  const base = `/api/sweeps/${sweepId}`;
  const chartsLoaded = plotlyReady();
  chartsLoaded.catch(() => {});
  let sweep;
  try {
    sweep = await api(base, { signal: ctx.signal });
  } catch (error) {
    if (isAbort(error)) return;
    loadFailure(root, "sweep", ctx.params[0], error, error instanceof ApiError && error.status === 404);
    return;
  }
  ctx.setTitle(sweep.name);

  const title = h("h1", { class: "inline" });
  const counts = h("span");
  const overall = h("div");
  const facts = h("dl", { class: "facts" });
  const note = h("p", { class: "muted", "aria-live": "polite" });
  const cancelAll = h("button", { type: "button", class: "danger", id: "cancel-sweep", onclick: cancel }, "Cancel all runs");
  const chartEl = h("div", { id: "chart-sweep", class: "sweep-chart", role: "img",
    "aria-label": "Parallel coordinates of the varied fields against final sparsity and accuracy" });
  const chartCaption = h("p", { class: "muted", id: "sweep-chart-caption" });
  const paths = Object.keys(sweep.grid);
  const runsBody = h("tbody");
  root.append(
    h("div", { class: "run-header" },
      h("div", { class: "run-title" }, title, counts),
      overall, facts,
      h("div", { class: "actions" }, cancelAll, h("a", { class: "button", href: `/?q=${encodeURIComponent(sweep.name)}` }, "Runs list")),
      note),
    h("section", { class: "card" }, h("h2", { text: "Varied fields against the results (completed runs)" }), chartEl, chartCaption),
    h("h2", { text: "Runs" }),
    h("div", { class: "table-wrap" }, h("table", { id: "sweep-runs" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Run" }), paths.map((p) => h("th", { scope: "col", text: shortName(p), title: p })),
        ["Status", "Progress", "Sparsity", "Accuracy"].map((t) => h("th", { scope: "col", text: t })))),
      runsBody)));
  ctx.onCleanup(() => purge(chartEl));
  // Crossing the phone width changes the titles: redraw then (zoom is fixed, nothing of the user's is lost).
  const narrowQuery = window.matchMedia(NARROW);
  const onNarrow = () => drawChart();
  narrowQuery.addEventListener("change", onNarrow);
  ctx.onCleanup(() => narrowQuery.removeEventListener("change", onNarrow));

  const settled = () => !sweep.runs.some((r) => isActive(r.status)); // no run of it queued or running

  function render() {
    title.textContent = sweep.name;
    counts.replaceChildren(statusCounts(sweep.status_counts));
    overall.replaceChildren(fractionBar(sweep.progress, "sweep progress"));
    facts.replaceChildren(
      h("div", {}, h("dt", { text: "runs" }), h("dd", { text: String(sweep.runs_total) })),
      h("div", {}, h("dt", { text: "created" }), h("dd", { text: dateTime(sweep.created_at) })),
      h("div", {}, h("dt", { text: "grid" }), h("dd", { text: paths.map((p) => `${p} ∈ {${sweep.grid[p].map(show).join(", ")}}`).join(" × ") })),
      h("div", {}, h("dt", { text: "best run" }), h("dd", {}, sweep.best_run_id
        ? h("a", { href: `/runs/${sweep.best_run_id}`, text: `#${sweep.best_run_id}` })
        : settled() && !sweep.runs.some((r) => r.status === "completed") ? "none completed" : "none completed yet")));
    const active = sweep.runs.filter((r) => isActive(r.status));
    const stoppable = active.filter((r) => !r.cancel_requested);
    cancelAll.hidden = !active.length;
    cancelAll.disabled = !stoppable.length;
    cancelAll.textContent = stoppable.length ? `Cancel all runs (${stoppable.length})` : "Cancel requested…";
    const combos = combinations(sweep.grid);
    runsBody.replaceChildren(...sweep.runs.map((run, i) => {
      const best = run.id === sweep.best_run_id;
      const bar = progressBar();
      bar.update(run);
      return h("tr", { class: best ? "sweep-best" : "", dataset: { runId: run.id } },
        h("td", { class: "name", "data-label": "Run" }, best ? h("span", { class: "best-mark", text: "★ best ", title: "Best final accuracy" }) : null,
          h("a", { href: `/runs/${run.id}`, text: `#${run.id} ${run.name}` })),
        paths.map((p) => h("td", { "data-label": shortName(p), text: show((combos[i] || {})[p]) })),
        h("td", { "data-label": "Status" }, statusBadge(run.status)),
        h("td", { "data-label": "Progress" }, bar.el),
        h("td", { class: "num", "data-label": "Sparsity", text: pct(run.sparsity) }),
        h("td", { class: "num", "data-label": "Accuracy", text: pct(run.test_acc, 2) }));
    }));
    drawChart();
  }

  async function drawChart() {
    try { await chartsLoaded; } catch (error) {
      chartCaption.textContent = error.message;
      return;
    }
    if (ctx.signal.aborted) return;
    const done = sweep.runs.filter((r) => r.status === "completed" && r.test_acc !== null && r.sparsity !== null);
    const exportAs = { filename: `sweep-${sweep.id}-parallel`, title: `${sweep.name}: varied fields against results` };
    if (!done.length) {
      // With no run left queued or running (all cancelled or failed, say), no completed run will come.
      const message = !settled() ? "Waiting for the first completed run"
        : sweep.runs.some((r) => r.status === "completed") ? "No completed run reported both sparsity and accuracy"
          : "No run of this sweep completed";
      draw(chartEl, [], emptyLayout(message), "sweep", exportAs);
      chartCaption.textContent = "";
      return;
    }
    const muted = getComputedStyle(document.documentElement).getPropertyValue("--muted").trim() || "#5b6470";
    const { traces, layout, tight } = parallelChart(sweep, done, sweep.best_run_id, { best: "#16a34a", other: "#9aa4b2", muted },
      { width: chartEl.clientWidth || 1000, narrow: window.matchMedia(NARROW).matches });
    // Tilted titles need room above the axes.
    draw(chartEl, traces, baseLayout({ ...layout, margin: { l: 20, r: 60, t: tight ? 80 : 40, b: 10 } }), "sweep", exportAs);
    chartCaption.textContent = `${done.length} of ${sweep.runs_total} runs completed.`
      + (sweep.best_run_id ? ` The green line is the best run (#${sweep.best_run_id}).` : "");
  }

  async function cancel() {
    const yes = await confirmDialog(`Cancel every queued or running run of sweep "${sweep.name}"? Finished runs stay.`,
      { confirm: "Yes, cancel all", cancel: "Keep running" });
    if (!yes) return;
    cancelAll.disabled = true;
    note.textContent = "";
    try {
      sweep = await api(`${base}/cancel`, { method: "POST", signal: ctx.signal });
      render();
    } catch (error) {
      if (!isAbort(error)) note.textContent = `Cancel failed: ${error.message}`;
    } finally {
      cancelAll.disabled = !sweep.runs.some((r) => isActive(r.status) && !r.cancel_requested);
    }
  }

  let timer = null;
  ctx.onCleanup(() => clearTimeout(timer));
  async function poll() {
    try {
      sweep = await api(base, { signal: ctx.signal });
      render();
    } catch (error) {
      if (isAbort(error)) return;
      note.textContent = `Could not refresh: ${error.message}`;
    }
    if (!ctx.signal.aborted && sweep.runs.some((r) => isActive(r.status))) timer = setTimeout(poll, POLL_MS);
  }
  render();
  if (sweep.runs.some((r) => isActive(r.status))) timer = setTimeout(poll, POLL_MS);
}
