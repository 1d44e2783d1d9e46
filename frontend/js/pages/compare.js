// Compare runs: overlaid curves of the chosen runs, the config fields they differ in, and accuracy vs sparsity of
// finished runs of one dataset and model, coloured by method, with the Pareto front and published results.

import { api, ApiError, isAbort } from "../api.js";
import { baseLayout, draw, emptyLayout, epochAxis, keepEpochTicks, lineMode, onChart, PALETTE, plotlyReady, purge, smooth } from "../charts.js";
import { h, pct, plotlyText, statusBadge } from "../dom.js";
import { flattenConfig, formatValue } from "./run-config.js";
import { parseId } from "./run.js";

const METRICS = [
  { key: "test_acc", title: "Test accuracy", format: ".1~%", loss: false },
  { key: "sparsity", title: "Sparsity", format: ".1~%", loss: false },
  { key: "test_loss", title: "Test loss", format: "", loss: true },
  { key: "train_loss", title: "Train loss", format: "", loss: true },
];
const PUBLISHED_SYMBOLS = ["diamond", "star", "triangle-up", "square", "cross", "x", "pentagon", "hexagon"];

/** The ids of `?ids=` that can exist, in order without repeats, and the parts that are no id (as typed). */
export function readIds(text) {
  const ids = [];
  const invalid = [];
  for (const part of (text || "").split(",").map((s) => s.trim()).filter(Boolean)) {
    const id = parseId(part);
    if (id === null) { if (!invalid.includes(part)) invalid.push(part); } else if (!ids.includes(id)) ids.push(id);
  }
  return { ids, invalid };
}

const notFound = (error) => error instanceof ApiError && error.status === 404;

/** `GET /api/compare` of the runs that exist, and the ids that name no run (on its 404 each run is looked up);
 * without that endpoint, the same shape from each run's epochs. */
async function loadRuns(ids, signal) {
  try {
    return { runs: (await api(`/api/compare?ids=${ids.join(",")}`, { signal })).runs, missing: [] };
  } catch (error) {
    if (isAbort(error) || !notFound(error)) throw error;
  }
  const found = await Promise.all(ids.map((id) => api(`/api/runs/${id}`, { signal }).catch((error) => {
    if (notFound(error)) return null;
    throw error;
  })));
  const missing = ids.filter((id, i) => !found[i]);
  const present = found.filter(Boolean);
  if (missing.length && present.length) {
    try {
      return { runs: (await api(`/api/compare?ids=${present.map((run) => run.id).join(",")}`, { signal })).runs, missing };
    } catch (error) {
      if (isAbort(error) || !notFound(error)) throw error;
    }
  }
  const runs = await Promise.all(present.map(async (run) => {
    const list = await api(`/api/runs/${run.id}/epochs`, { signal });
    const x = list.items.map((e) => e.epoch);
    const series = Object.fromEntries(METRICS.map(({ key }) => [key, { x, y: list.items.map((e) => e[key] ?? null) }]));
    return { id: run.id, name: run.name, status: run.status, strategy: run.strategy, series };
  }));
  return { runs, missing };
}

/** Accuracy/sparsity points of finished runs and the ids on the Pareto front (more of both is better). */
export function paretoFront(points) {
  return points.filter((p) => !points.some((q) => q !== p && q.sparsity >= p.sparsity && q.accuracy >= p.accuracy
    && (q.sparsity > p.sparsity || q.accuracy > p.accuracy))).map((p) => p.id);
}

/** Config rows of several runs: [path, values per run], and whether the values differ. */
export function configRows(configs) {
  const paths = [];
  const seen = new Set();
  const flat = configs.map((config) => new Map(flattenConfig(config)));
  for (const rows of flat) for (const path of rows.keys()) if (!seen.has(path)) { seen.add(path); paths.push(path); }
  return paths.map((path) => {
    const values = flat.map((rows) => (rows.has(path) ? rows.get(path) : undefined));
    const keys = values.map((v) => JSON.stringify(v ?? null));
    return { path, values, differs: keys.some((k) => k !== keys[0]) };
  });
}

export async function comparePage(root, ctx) {
  const chartsLoaded = plotlyReady();
  chartsLoaded.catch(() => {});
  const asked = readIds(ctx.query.get("ids"));
  let ids = asked.ids; // once loaded: the ids of the runs shown
  const leftOut = h("div", { class: "notice", id: "compare-left-out", role: "status", hidden: true });
  const view = { log: false, smoothing: 0, showAll: false, pair: null, published: false };
  root.append(h("h1", { text: "Compare runs" }));
  const chosen = h("div");
  const configBox = h("section", { class: "card config-diff", id: "config-diff", hidden: true });
  const metricCharts = METRICS.map((m) => ({ ...m, el: h("div", { class: "chart", id: `compare-${m.key}`, role: "figure", "aria-label": `${m.title} per epoch` }) }));
  metricCharts.forEach((m) => keepEpochTicks(m.el));
  const paretoEl = h("div", { class: "chart tall", id: "chart-pareto", role: "figure",
    "aria-label": "Final test accuracy against sparsity of finished runs of one dataset and model, with the Pareto front" });
  const paretoNote = h("p", { class: "muted chart-caption", id: "pareto-note" });
  const pairSelect = h("select", { id: "pareto-pair", onchange: () => { view.pair = pairSelect.value; reloadPareto(); } });
  const publishedBox = h("input", { type: "checkbox", id: "pareto-published", onchange: () => { view.published = publishedBox.checked; reloadPareto(); } });
  const smoothing = h("input", { type: "range", id: "compare-smoothing", min: 0, max: 0.95, step: 0.05, value: 0 });
  smoothing.addEventListener("input", () => { view.smoothing = Number(smoothing.value); renderCurves(); });
  const curveOptions = h("div", { class: "chart-options" },
    h("label", { class: "chart-option" }, h("input", { type: "checkbox", id: "compare-log",
      onchange: (event) => { view.log = event.target.checked; renderCurves(); } }), " Log scale (losses)"),
    h("label", { class: "chart-option", for: "compare-smoothing" }, "Smoothing ", smoothing));
  root.append(leftOut, chosen, configBox);
  const curves = h("div", { id: "compare-curves" }, curveOptions, h("div", { class: "charts" },
    metricCharts.map((m) => h("section", { class: "card" }, h("h2", { text: m.title }), m.el))));
  root.append(curves, h("div", { class: "charts spaced" },
    h("section", { class: "card wide" }, h("h2", { text: "Accuracy vs sparsity (finished runs)" }),
      h("div", { class: "chart-options" },
        h("label", { class: "chart-option", for: "pareto-pair" }, "Dataset and model "), pairSelect,
        h("label", { class: "chart-option" }, publishedBox, " Published results (MNIST LeNets)")),
      paretoNote, paretoEl)));
  ctx.onCleanup(() => { metricCharts.forEach((m) => purge(m.el)); purge(paretoEl); });

  await chartsLoaded;
  let runs = [];
  let configs = [];
  let pareto = null;
  const fg = () => getComputedStyle(document.documentElement).getPropertyValue("--fg").trim();
  const muted = () => getComputedStyle(document.documentElement).getPropertyValue("--muted").trim();

  function renderCurves() {
    for (const m of metricCharts) {
      const total = Math.max(1, ...runs.flatMap((run) => run.series?.[m.key]?.x || []));
      const exportAs = { filename: `compare-${ids.join("-")}-${m.key}`, title: `${m.title}: runs ${ids.map((i) => `#${i}`).join(", ")}` };
      if (!runs.some((run) => run.series?.[m.key]?.x?.length)) {
        draw(m.el, [], emptyLayout(runs.length ? "None of these runs has recorded an epoch yet" : "Pick runs to compare"), `compare-${m.key}`, exportAs);
        continue;
      }
      const log = view.log && m.loss;
      draw(m.el, runs.map((run, i) => ({
        x: run.series?.[m.key]?.x || [], y: smooth(run.series?.[m.key]?.y || [], view.smoothing),
        mode: lineMode(run.series?.[m.key]?.x?.length ?? 0),
        name: plotlyText(`#${run.id} ${run.name}`), line: { color: PALETTE[i % PALETTE.length] },
      })), baseLayout({ xaxis: epochAxis(m.el, total), yaxis: { tickformat: m.format, title: { text: m.title.toLowerCase() + (log ? " (log)" : "") },
        type: log ? "log" : "linear" } }), `compare-${m.key}`, exportAs);
    }
  }

  function renderConfigs() {
    if (runs.length < 2 || configs.length !== runs.length) { configBox.hidden = true; return; }
    configBox.hidden = false;
    const rows = configRows(configs).filter((row) => row.path !== "name");
    const shown = view.showAll ? rows : rows.filter((row) => row.differs);
    const toggle = h("label", { class: "chart-option" }, h("input", { type: "checkbox", id: "config-show-all", checked: view.showAll,
      onchange: (event) => { view.showAll = event.target.checked; renderConfigs(); } }), ` Show all ${rows.length} fields`);
    const same = rows.length - rows.filter((row) => row.differs).length;
    configBox.replaceChildren(h("h2", { text: "Configuration" }),
      h("div", { class: "chart-options" }, h("span", { class: "muted", text: view.showAll
        ? "Every field; those that differ are marked."
        : `${rows.length - same} fields differ; ${same} equal ones are hidden.` }), toggle),
      h("div", { class: "table-wrap" }, h("table", { id: "config-diff-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Field" }),
          runs.map((run, i) => h("th", { scope: "col" }, h("span", { class: `swatch swatch-${i % PALETTE.length}`, "aria-hidden": "true" }),
            ` #${run.id}`)))),
        h("tbody", {}, shown.length ? shown.map((row) => h("tr", { class: row.differs ? "differs" : "", dataset: { field: row.path } },
          h("th", { scope: "row", class: "field-path", text: row.path }),
          row.values.map((value) => h("td", { text: value === undefined ? "(not set)" : formatValue(value) }))))
          : h("tr", {}, h("td", { colspan: runs.length + 1, class: "empty", text: "These runs have the same configuration." }))))));
  }

  function renderPareto() {
    if (!pareto) return;
    const selected = new Set(ids);
    const methods = [...new Set(pareto.points.map((p) => p.method || p.strategy))].sort();
    const traces = methods.map((method, i) => {
      const pts = pareto.points.filter((p) => (p.method || p.strategy) === method);
      return {
        type: "scatter", mode: "markers", name: plotlyText(method), x: pts.map((p) => p.sparsity), y: pts.map((p) => p.accuracy),
        customdata: pts.map((p) => p.id),
        text: pts.map((p) => `#${p.id} ${plotlyText(p.name)}<br>${plotlyText(p.strategy)}<br>${plotlyText(p.config_summary || "")}`),
        marker: { color: PALETTE[i % PALETTE.length], size: pts.map((p) => (selected.has(p.id) ? 14 : 9)),
          line: { width: pts.map((p) => (selected.has(p.id) ? 2 : 0)), color: fg() } },
        hovertemplate: "%{text}<br>sparsity %{x:.2%}<br>accuracy %{y:.2%}<extra>%{fullData.name}</extra>",
      };
    });
    const front = pareto.points.filter((p) => p.on_front).sort((a, b) => a.sparsity - b.sparsity);
    traces.push({ type: "scatter", mode: "lines", name: "Pareto front", x: front.map((p) => p.sparsity), y: front.map((p) => p.accuracy),
      line: { dash: "dash", shape: "hv", color: muted() }, hoverinfo: "skip" });
    const published = pareto.published || [];
    [...new Set(published.map((p) => p.method))].forEach((method, i) => {
      const pts = published.filter((p) => p.method === method);
      traces.push({ type: "scatter", mode: "markers", name: `${plotlyText(method)} (published)`, legendgroup: "published",
        x: pts.map((p) => p.sparsity), y: pts.map((p) => p.accuracy), text: pts.map((p) => plotlyText(p.source)),
        marker: { symbol: PUBLISHED_SYMBOLS[i % PUBLISHED_SYMBOLS.length], size: 11, color: "rgba(0,0,0,0)", line: { width: 2, color: muted() } },
        hovertemplate: `${plotlyText(method)} (published)<br>sparsity %{x:.1%}<br>error %{customdata:.2%}<br>%{text}<extra></extra>`,
        customdata: pts.map((p) => p.error) });
    });
    const [dataset, model] = (view.pair || "").split("|");
    const exportAs = { filename: `pareto-${dataset || "all"}-${model || "all"}`, title: `Accuracy vs sparsity: ${model || "all models"} on ${dataset || "all datasets"}` };
    if (!pareto.points.length && !published.length) {
      draw(paretoEl, [], emptyLayout("No completed run has both a sparsity and an accuracy yet"), "pareto", exportAs);
    } else {
      // On a phone a legend above the plot (methods plus published results) squeezes the plot to a sliver: there it
      // goes below, and the chart grows to hold it (CSS).
      const narrow = window.matchMedia("(max-width: 640px)").matches;
      draw(paretoEl, traces, baseLayout({ xaxis: { title: { text: "sparsity" }, tickformat: ".0%" },
        yaxis: { title: { text: "final test accuracy" }, tickformat: ".1~%" },
        ...(narrow ? { legend: { orientation: "h", x: 0, xanchor: "left", y: -0.18, yanchor: "top" } } : {}) }),
      "pareto", exportAs);
    }
    paretoEl.dataset.pair = view.pair || "";
    paretoNote.textContent = pareto.points.length
      ? `${pareto.points.length} finished runs of ${pairLabel(dataset, model)}; ${front.length} on the front. Colour: the preset, else the strategy. Click a point to open its run.`
      : "No completed run has both a sparsity and an accuracy yet.";
    if (view.published && !published.length && pareto.points.length) paretoNote.textContent += " No published results for this model and dataset.";
  }

  // A tracked run's config may name no model or dataset: its pair read "on" (and the chart, unfiltered, mixed them).
  function pairLabel(dataset, model) {
    return `${model || "no model named"} on ${dataset || "no dataset named"}`;
  }

  function fillPairs(groups) {
    const value = (g) => `${g.dataset}|${g.model}`;
    if (!view.pair || !groups.some((g) => value(g) === view.pair)) view.pair = groups.length ? value(groups[0]) : null;
    pairSelect.replaceChildren(...groups.map((g) => h("option", { value: value(g), text: `${pairLabel(g.dataset, g.model)} (${g.runs})` })));
    if (view.pair) pairSelect.value = view.pair;
    pairSelect.disabled = groups.length < 2;
  }

  async function loadPareto() {
    // The first call learns the (dataset, model) pairs; the chart then shows the most common pair, never a mix.
    if (!view.pair) {
      const first = await api("/api/pareto", { signal: ctx.signal });
      fillPairs(first.groups || []);
      if (!view.pair) return first;
    }
    const [dataset, model] = view.pair.split("|");
    const query = new URLSearchParams({ dataset, model });
    if (view.published) query.set("published", "true");
    const body = await api(`/api/pareto?${query}`, { signal: ctx.signal });
    fillPairs(body.groups || []);
    return body;
  }

  async function reloadPareto() {
    try {
      pareto = await loadPareto();
      renderPareto();
    } catch (error) {
      if (!isAbort(error)) paretoNote.textContent = `Could not load finished runs: ${error.message}`;
    }
  }

  function renderChosen() {
    if (!ids.length) {
      chosen.replaceChildren(h("p", { class: "notice" }, "Pick runs to overlay on the ", h("a", { href: "/", text: "Runs page" }),
        " (tick their boxes, then “Compare selected”)."));
      curves.hidden = true;
      return;
    }
    const details = new Map(configs.map((config, i) => [runs[i]?.id, config]));
    chosen.replaceChildren(h("div", { class: "table-wrap spaced-below" }, h("table", { id: "compare-table" },
      h("thead", {}, h("tr", {}, ["", "Run", "Status", "Method", "Sparsity", "Best acc."].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, runs.map((run, i) => h("tr", {},
        h("td", {}, h("span", { class: `swatch swatch-${i % PALETTE.length}`, "aria-hidden": "true" })),
        h("td", { class: "name" }, h("a", { href: `/runs/${run.id}`, text: `#${run.id} ${run.name}` })),
        h("td", {}, statusBadge(run.status)),
        h("td", { text: details.get(run.id)?.preset || run.strategy }),
        h("td", { class: "num", text: pct(lastOf(run.series?.sparsity)) }),
        h("td", { class: "num", text: pct(maxOf(run.series?.test_acc), 2) })))))));
  }

  const loadConfigs = (list) => Promise.all(list.map((run) => api(`/api/runs/${run.id}`, { signal: ctx.signal }).then((d) => d.config)));
  let missing = [];
  const results = await Promise.allSettled([ids.length ? loadRuns(ids, ctx.signal).then(async (found) => [found, await loadConfigs(found.runs)])
    : Promise.resolve([{ runs: [], missing: [] }, []]), loadPareto()]);
  if (ctx.signal.aborted) return;
  if (results[0].status === "fulfilled") {
    [{ runs, missing }, configs] = results[0].value;
    ids = runs.map((run) => run.id);
  } else chosen.append(h("div", { class: "notice error", role: "alert", text: `Could not load the runs: ${results[0].reason.message}` }));
  if (results[1].status === "fulfilled") pareto = results[1].value;
  else paretoNote.textContent = `Could not load finished runs: ${results[1].reason.message}`;
  if (results[0].status === "fulfilled") renderChosen();
  // Ids that name no run, or are no id at all, are left out of the comparison, and said so.
  const left = [missing.length ? `not found: ${missing.join(", ")}` : "",
    asked.invalid.length ? `not a valid id: ${asked.invalid.join(", ")}` : ""].filter(Boolean);
  leftOut.textContent = left.length ? `Left out of the comparison (${left.join("; ")}).` : "";
  leftOut.hidden = !left.length;
  renderConfigs();
  renderCurves();
  renderPareto();
  onChart(paretoEl, "plotly_click", (event) => {
    const id = event.points?.[0]?.customdata;
    if (Number.isInteger(id) && event.points[0].data.legendgroup !== "published") ctx.navigate(`/runs/${id}`);
  });
  const onTheme = () => { renderCurves(); renderPareto(); };
  window.addEventListener("themechange", onTheme);
  ctx.onCleanup(() => window.removeEventListener("themechange", onTheme));
}

const lastOf = (s) => (s?.y?.length ? s.y[s.y.length - 1] : null);
const maxOf = (s) => { const ys = (s?.y || []).filter((v) => v !== null); return ys.length ? Math.max(...ys) : null; };
