// The run page's metric charts: loss and accuracy, sparsity against its schedule, per-layer sparsity, mask churn.

import { baseLayout, draw, PALETTE, purge } from "../charts.js";
import { h, plotlyText } from "../dom.js";

/** Layer names in order of first appearance across the epochs. */
export function layerNames(sorted) {
  const names = [];
  const seen = new Set();
  for (const record of sorted) for (const layer of record.layers || []) if (!seen.has(layer.name)) { seen.add(layer.name); names.push(layer.name); }
  return names;
}

/** The chart cards (`el`) and `draw(sorted, epochsTotal)`, which updates them in place (zoom kept) and returns the layer names. */
export function metricCharts(uirev) {
  const chart = (id, label, extra = "") => h("div", { class: `chart ${extra}`, id, role: "figure", "aria-label": label });
  const card = (heading, ...body) => h("section", { class: "card" }, h("h2", { text: heading }), ...body);
  const charts = {
    loss: chart("chart-loss", "Loss and accuracy per epoch"),
    sparsity: chart("chart-sparsity", "Overall sparsity and the schedule's target per epoch"),
    heat: chart("chart-layer-heatmap", "Per-layer sparsity, layers by epochs", "tall"),
    lines: chart("chart-layer-lines", "Per-layer sparsity per epoch", "tall"),
    churn: chart("chart-churn", "Weights pruned and regrown per epoch and layer", "tall"),
  };
  const el = [
    card("Loss and accuracy", charts.loss),
    card("Sparsity", charts.sparsity),
    card("Per-layer sparsity", charts.heat),
    card("Per-layer sparsity over epochs", charts.lines),
    h("section", { class: "card wide" }, h("h2", { text: "Mask churn" }),
      h("p", { class: "muted", style: "margin:0 0 4px", text: "Weights pruned (up) and regrown (down) at each epoch, per layer." }), charts.churn),
  ];

  function drawAll(sorted, epochsTotal) {
    const x = sorted.map((e) => e.epoch);
    const col = (key) => sorted.map((e) => (e[key] === undefined ? null : e[key]));
    // The x axis spans the whole planned run, so a live run fills in from the left. autorange (not a fixed
    // range) keeps the user's zoom under uirevision.
    const total = Math.max(epochsTotal || 1, sorted.length ? sorted[sorted.length - 1].epoch : 1);
    const xaxis = { title: { text: "epoch" }, autorangeoptions: { include: [0, total] }, dtick: total <= 10 ? 1 : undefined };
    const cellAxis = { ...xaxis, autorangeoptions: { include: [0.5, total + 0.5] } };
    // Markers help read a few epochs; past that they are thousands of SVG nodes for nothing.
    const mode = sorted.length <= 60 ? "lines+markers" : "lines";

    draw(charts.loss, [
      { x, y: col("train_loss"), name: "train loss", mode, line: { color: PALETTE[0] }, marker: { size: 4 } },
      { x, y: col("test_loss"), name: "test loss", mode, line: { color: PALETTE[1] }, marker: { size: 4 } },
      { x, y: col("train_acc"), name: "train acc.", yaxis: "y2", mode, line: { color: PALETTE[0], dash: "dot" }, marker: { size: 4 } },
      { x, y: col("test_acc"), name: "test acc.", yaxis: "y2", mode, line: { color: PALETTE[1], dash: "dot" }, marker: { size: 4 } },
    ], baseLayout({ xaxis, yaxis: { title: { text: "loss" } },
      yaxis2: { title: { text: "accuracy" }, overlaying: "y", side: "right", tickformat: ".1~%", tickmode: "auto", showgrid: false } }), uirev);

    draw(charts.sparsity, [
      { x, y: col("sparsity"), name: "sparsity", mode, line: { color: PALETTE[2] }, marker: { size: 4 } },
      { x, y: col("target_sparsity"), name: "schedule target", mode: "lines", line: { color: PALETTE[3], dash: "dash" } },
    ], baseLayout({ xaxis, yaxis: { title: { text: "sparsity" }, tickformat: ".0%", range: [0, 1.02] } }), uirev);

    const names = layerNames(sorted);
    const labels = names.map(plotlyText);
    const lookup = sorted.map((record) => new Map((record.layers || []).map((l) => [l.name, l])));
    const field = (key) => names.map((name) => lookup.map((m) => m.get(name)?.[key] ?? null));
    const sparsityZ = field("sparsity");
    draw(charts.heat, [{
      type: "heatmap", x, y: labels, z: sparsityZ, zmin: 0, zmax: 1, colorscale: "Viridis",
      colorbar: { tickformat: ".0%", thickness: 12 }, hovertemplate: "%{y}<br>epoch %{x}<br>sparsity %{z:.1%}<extra></extra>",
    }], baseLayout({ xaxis: cellAxis, yaxis: { automargin: true, autorange: "reversed", type: "category" }, margin: { l: 60, r: 10, t: 10, b: 40 } }), uirev);

    draw(charts.lines, names.map((name, i) => ({
      x, y: sparsityZ[i], name: labels[i], mode, marker: { size: 4 }, line: { color: PALETTE[i % PALETTE.length] },
      hovertemplate: "%{y:.1%}",
    })), baseLayout({ xaxis, yaxis: { title: { text: "sparsity" }, tickformat: ".0%", range: [0, 1.02] }, hovermode: "x unified" }), uirev);

    const pruned = field("pruned");
    const regrown = field("regrown");
    // Stacked areas, not bars: one SVG path per trace stays fast at 200 epochs × 20 layers (8000 bars do not).
    draw(charts.churn, names.flatMap((name, i) => [
      { x, y: pruned[i], name: labels[i], legendgroup: labels[i], stackgroup: "pruned", mode, marker: { size: 4 },
        line: { color: PALETTE[i % PALETTE.length], width: 1 }, hovertemplate: `${labels[i]}: %{y:,} pruned<extra></extra>` },
      { x, y: regrown[i].map((v) => (v === null ? null : -v)), customdata: regrown[i], name: `${labels[i]} regrown`,
        legendgroup: labels[i], stackgroup: "regrown", mode, marker: { size: 4 }, showlegend: false,
        line: { color: PALETTE[i % PALETTE.length], width: 1, dash: "dot" },
        hovertemplate: `${labels[i]}: %{customdata:,} regrown<extra></extra>` },
    ]), baseLayout({ xaxis, yaxis: { title: { text: "weights (− regrown)" } }, hovermode: "x" }), uirev);
    return names;
  }

  return { el, draw: drawAll, purge: () => Object.values(charts).forEach(purge) };
}
