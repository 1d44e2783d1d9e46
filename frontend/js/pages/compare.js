// Compare runs: overlaid curves of the chosen runs, and accuracy vs sparsity of all finished runs with the Pareto front.

import { api, ApiError, isAbort } from "../api.js";
import { baseLayout, draw, onChart, PALETTE, plotlyReady, purge } from "../charts.js";
import { h, pct, plotlyText, statusBadge } from "../dom.js";

const METRICS = [
  { key: "test_acc", title: "Test accuracy", format: ".1~%" },
  { key: "sparsity", title: "Sparsity", format: ".1~%" },
  { key: "test_loss", title: "Test loss", format: "" },
  { key: "train_loss", title: "Train loss", format: "" },
];

/** `GET /api/compare` when the API has it; otherwise the same shape from each run's epochs. */
async function loadRuns(ids, signal) {
  try {
    const body = await api(`/api/compare?ids=${ids.join(",")}`, { signal });
    return body.runs;
  } catch (error) {
    if (isAbort(error) || !(error instanceof ApiError) || error.status !== 404) throw error;
  }
  return Promise.all(ids.map(async (id) => {
    const [run, list] = await Promise.all([api(`/api/runs/${id}`, { signal }), api(`/api/runs/${id}/epochs`, { signal })]);
    const x = list.items.map((e) => e.epoch);
    const series = Object.fromEntries(METRICS.map(({ key }) => [key, { x, y: list.items.map((e) => e[key] ?? null) }]));
    return { id: run.id, name: run.name, status: run.status, strategy: run.strategy, sparsity: run.sparsity,
      test_acc: run.test_acc, best_test_acc: run.best_test_acc, series };
  }));
}

/** Accuracy/sparsity points of finished runs and the ids on the Pareto front (more of both is better). */
export function paretoFront(points) {
  return points.filter((p) => !points.some((q) => q !== p && q.sparsity >= p.sparsity && q.accuracy >= p.accuracy
    && (q.sparsity > p.sparsity || q.accuracy > p.accuracy))).map((p) => p.id);
}

async function loadPareto(signal) {
  try {
    return await api("/api/pareto", { signal });
  } catch (error) {
    if (isAbort(error) || !(error instanceof ApiError) || error.status !== 404) throw error;
  }
  const { items } = await api("/api/runs?status=completed&limit=500&sort=-created_at", { signal });
  const points = items.filter((r) => r.sparsity !== null && r.test_acc !== null)
    .map((r) => ({ id: r.id, name: r.name, strategy: r.strategy, sparsity: r.sparsity, accuracy: r.test_acc }));
  const front = paretoFront(points);
  for (const p of points) p.on_front = front.includes(p.id);
  return { points, front };
}

export async function comparePage(root, ctx) {
  const chartsLoaded = plotlyReady();
  chartsLoaded.catch(() => {});
  const ids = [...new Set((ctx.query.get("ids") || "").split(",").map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0))];
  root.append(h("h1", { text: "Compare runs" }));
  const chosen = h("div");
  const metricCharts = METRICS.map((m) => ({ ...m, el: h("div", { class: "chart", id: `compare-${m.key}`, role: "figure", "aria-label": `${m.title} per epoch` }) }));
  const paretoEl = h("div", { class: "chart tall", id: "chart-pareto", role: "figure",
    "aria-label": "Final test accuracy against sparsity of finished runs, with the Pareto front" });
  const paretoNote = h("p", { class: "muted", style: "margin:0 0 4px" });
  root.append(chosen);
  const curves = h("div", { class: "charts", id: "compare-curves" },
    metricCharts.map((m) => h("section", { class: "card" }, h("h2", { text: m.title }), m.el)));
  root.append(curves, h("div", { class: "charts", style: "margin-top:12px" },
    h("section", { class: "card wide" }, h("h2", { text: "Accuracy vs sparsity (finished runs)" }), paretoNote, paretoEl)));
  ctx.onCleanup(() => { metricCharts.forEach((m) => purge(m.el)); purge(paretoEl); });

  await chartsLoaded;
  let runs = [];
  let pareto = null;

  function renderCurves() {
    for (const m of metricCharts) {
      draw(m.el, runs.map((run, i) => ({
        x: run.series?.[m.key]?.x || [], y: run.series?.[m.key]?.y || [], mode: "lines", name: plotlyText(`#${run.id} ${run.name}`),
        line: { color: PALETTE[i % PALETTE.length] },
      })), baseLayout({ xaxis: { title: { text: "epoch" } }, yaxis: { tickformat: m.format, title: { text: m.title.toLowerCase() } } }),
      `compare-${m.key}`);
    }
  }

  function renderPareto() {
    if (!pareto) return;
    const selected = new Set(ids);
    const strategies = [...new Set(pareto.points.map((p) => p.strategy))];
    const traces = strategies.map((strategy, i) => {
      const pts = pareto.points.filter((p) => p.strategy === strategy);
      return {
        type: "scatter", mode: "markers", name: plotlyText(strategy), x: pts.map((p) => p.sparsity), y: pts.map((p) => p.accuracy),
        customdata: pts.map((p) => p.id), text: pts.map((p) => plotlyText(`#${p.id} ${p.name}`)),
        marker: { color: PALETTE[i % PALETTE.length], size: pts.map((p) => (selected.has(p.id) ? 14 : 9)),
          line: { width: pts.map((p) => (selected.has(p.id) ? 2 : 0)), color: getComputedStyle(document.documentElement).getPropertyValue("--fg").trim() } },
        hovertemplate: "%{text}<br>sparsity %{x:.2%}<br>accuracy %{y:.2%}<extra>%{fullData.name}</extra>",
      };
    });
    const front = pareto.points.filter((p) => p.on_front).sort((a, b) => a.sparsity - b.sparsity);
    traces.push({ type: "scatter", mode: "lines", name: "Pareto front", x: front.map((p) => p.sparsity), y: front.map((p) => p.accuracy),
      line: { dash: "dash", shape: "hv", color: getComputedStyle(document.documentElement).getPropertyValue("--muted").trim() }, hoverinfo: "skip" });
    draw(paretoEl, traces, baseLayout({ xaxis: { title: { text: "sparsity" }, tickformat: ".0%" },
      yaxis: { title: { text: "final test accuracy" }, tickformat: ".1~%" } }), "pareto");
    paretoNote.textContent = pareto.points.length
      ? `${pareto.points.length} finished runs; ${front.length} on the front. Click a point to open its run.`
      : "No completed run has both a sparsity and an accuracy yet.";
  }

  function renderChosen() {
    if (!ids.length) {
      chosen.replaceChildren(h("p", { class: "notice" }, "Pick runs to overlay on the ", h("a", { href: "/", text: "Runs page" }),
        " (tick their boxes, then “Compare selected”)."));
      curves.hidden = true;
      return;
    }
    chosen.replaceChildren(h("div", { class: "table-wrap", style: "margin-bottom:12px" }, h("table", { id: "compare-table" },
      h("thead", {}, h("tr", {}, ["", "Run", "Status", "Strategy", "Sparsity", "Best acc."].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, runs.map((run, i) => h("tr", {},
        h("td", {}, h("span", { style: `display:inline-block;width:12px;height:12px;border-radius:2px;background:${PALETTE[i % PALETTE.length]}`, "aria-hidden": "true" })),
        h("td", { class: "name" }, h("a", { href: `/runs/${run.id}`, text: `#${run.id} ${run.name}` })),
        h("td", {}, statusBadge(run.status)),
        h("td", { text: run.strategy }),
        h("td", { class: "num", text: pct(run.sparsity ?? lastOf(run.series?.sparsity)) }),
        h("td", { class: "num", text: pct(run.best_test_acc ?? maxOf(run.series?.test_acc), 2) })))))));
  }

  const results = await Promise.allSettled([ids.length ? loadRuns(ids, ctx.signal) : Promise.resolve([]), loadPareto(ctx.signal)]);
  if (ctx.signal.aborted) return;
  if (results[0].status === "fulfilled") runs = results[0].value;
  else chosen.append(h("div", { class: "notice error", role: "alert", text: `Could not load the runs: ${results[0].reason.message}` }));
  if (results[1].status === "fulfilled") pareto = results[1].value;
  else paretoNote.textContent = `Could not load finished runs: ${results[1].reason.message}`;
  if (results[0].status === "fulfilled") renderChosen();
  renderCurves();
  renderPareto();
  onChart(paretoEl, "plotly_click", (event) => {
    const id = event.points?.[0]?.customdata;
    if (id) ctx.navigate(`/runs/${id}`);
  });
  const onTheme = () => { renderCurves(); renderPareto(); };
  window.addEventListener("themechange", onTheme);
  ctx.onCleanup(() => window.removeEventListener("themechange", onTheme));
}

const lastOf = (s) => (s?.y?.length ? s.y[s.y.length - 1] : null);
const maxOf = (s) => { const ys = (s?.y || []).filter((v) => v !== null); return ys.length ? Math.max(...ys) : null; };
