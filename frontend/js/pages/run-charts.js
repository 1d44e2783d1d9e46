// The run page's metric charts: loss and accuracy, sparsity against its schedule, per-layer sparsity, mask churn.

import { baseLayout, draw, emptyLayout, epochAxis, keepEpochTicks, PALETTE, purge, smooth } from "../charts.js";
import { h, plotlyText } from "../dom.js";

/** Layer names in order of first appearance across the epochs. */
export function layerNames(sorted) {
  const names = [];
  const seen = new Set();
  for (const record of sorted) for (const layer of record.layers || []) if (!seen.has(layer.name)) { seen.add(layer.name); names.push(layer.name); }
  return names;
}

/** The names of a tracked run's other logged scalars (`extra`), in order of first appearance. */
export function extraNames(sorted) {
  const names = new Set();
  for (const record of sorted) for (const name of Object.keys(record.extra || {})) names.add(name);
  return [...names];
}

/** The index of the first epoch that pruned anything: the initial prune, whose spike can hide all later churn. */
export function initialPruneIndex(sorted) {
  return sorted.findIndex((record) => (record.layers || []).some((layer) => (layer.pruned ?? 0) > 0));
}

const checkbox = (id, label, onchange) => h("label", { class: "chart-option" },
  h("input", { type: "checkbox", id, onchange }), ` ${label}`);

/**
 * The chart cards (`el`) and `draw(sorted, epochsTotal, context)`, which updates them in place (zoom kept) and
 * returns the layer names. `context`: `{ waiting }` (what empty charts say) and `{ exportName }` (PNG file names).
 */
export function metricCharts(uirev) {
  const options = { lossLog: false, smoothing: 0, churnLog: false, hideInitial: false };
  let last = null; // the arguments of the newest draw, to redraw when an option changes
  const redraw = () => last && drawAll(...last);
  const chart = (id, label, extra = "") => h("div", { class: `chart ${extra}`, id, role: "figure", "aria-label": label });
  const card = (heading, ...body) => h("section", { class: "card" }, h("h2", { text: heading }), ...body);
  const charts = {
    loss: chart("chart-loss", "Loss and accuracy per epoch"),
    sparsity: chart("chart-sparsity", "Overall sparsity and the schedule's target per epoch"),
    heat: chart("chart-layer-heatmap", "Per-layer sparsity, layers by epochs", "tall"),
    lines: chart("chart-layer-lines", "Per-layer sparsity per epoch", "tall"),
    churn: chart("chart-churn", "Weights pruned and regrown per epoch and layer", "tall"),
    extra: chart("chart-extra", "Other scalars the run logged, per epoch"),
  };
  for (const el of [charts.loss, charts.sparsity, charts.lines, charts.churn, charts.extra]) keepEpochTicks(el);
  const smoothing = h("input", { type: "range", id: "loss-smoothing", min: 0, max: 0.95, step: 0.05, value: 0,
    "aria-describedby": "loss-smoothing-value" });
  const smoothingValue = h("output", { id: "loss-smoothing-value", for: "loss-smoothing", text: "0" });
  smoothing.addEventListener("input", () => {
    options.smoothing = Number(smoothing.value);
    smoothingValue.textContent = options.smoothing.toFixed(2);
    redraw();
  });
  // A tracked run's other scalars (`run.log(epoch=e, grad_norm=…)`): shown only when the run logged some.
  const extraCard = h("section", { class: "card", id: "extra-scalars", hidden: true },
    h("h2", { text: "Other logged scalars" }), charts.extra);
  const el = [
    card("Loss and accuracy",
      h("div", { class: "chart-options" },
        checkbox("loss-log", "Log scale (loss)", (event) => { options.lossLog = event.target.checked; redraw(); }),
        h("label", { class: "chart-option", for: "loss-smoothing" }, "Smoothing ", smoothing, smoothingValue)),
      charts.loss),
    extraCard,
    card("Sparsity", charts.sparsity),
    card("Per-layer sparsity", charts.heat),
    card("Per-layer sparsity over epochs", charts.lines),
    h("section", { class: "card wide" }, h("h2", { text: "Mask churn" }),
      h("p", { class: "muted chart-caption", text: "Weights pruned (up) and regrown (down) at each epoch, per layer. "
        + "On a log scale both count upwards: pruned solid, regrown dotted." }),
      h("div", { class: "chart-options" },
        checkbox("churn-log", "Log scale", (event) => { options.churnLog = event.target.checked; redraw(); }),
        checkbox("churn-hide-initial", "Hide the initial prune", (event) => { options.hideInitial = event.target.checked; redraw(); })),
      charts.churn),
  ];

  function drawAll(sorted, epochsTotal, { waiting = "Waiting for the first epoch", exportName = "run" } = {}) {
    last = [sorted, epochsTotal, { waiting, exportName }];
    const names = layerNames(sorted);
    const as = (key, title) => ({ filename: `${exportName}-${key}`, title: `${exportName}: ${title}` });
    const extras = extraNames(sorted);
    extraCard.hidden = !extras.length;
    if (!sorted.length) {
      for (const [key, el] of Object.entries(charts)) {
        if (el !== charts.extra) draw(el, [], emptyLayout(waiting), uirev, as(key, key));
      }
      return names;
    }
    const x = sorted.map((e) => e.epoch);
    const col = (key) => sorted.map((e) => (e[key] === undefined ? null : e[key]));
    // The x axis spans the whole planned run, so a live run fills in from the left. autorange (not a fixed
    // range) keeps the user's zoom under uirevision.
    const total = Math.max(epochsTotal || 1, sorted[sorted.length - 1].epoch);
    const xaxisOf = (el) => epochAxis(el, total, { autorangeoptions: { include: [0, total] } });
    // Markers help read a few epochs; past that they are thousands of SVG nodes for nothing.
    const mode = sorted.length <= 60 ? "lines+markers" : "lines";

    const w = options.smoothing;
    const lossTraces = [
      { key: "train_loss", name: "train loss", color: PALETTE[0] },
      { key: "test_loss", name: "test loss", color: PALETTE[1] },
      { key: "train_acc", name: "train acc.", color: PALETTE[0], y2: true },
      { key: "test_acc", name: "test acc.", color: PALETTE[1], y2: true },
    ].filter((t) => col(t.key).some((v) => v !== null)); // a series the run never logged gets no legend entry
    const traces = lossTraces.map((t) => ({ x, y: smooth(col(t.key), w), name: t.name, mode, yaxis: t.y2 ? "y2" : "y",
      line: { color: t.color, dash: t.y2 ? "dot" : "solid" }, marker: { size: 4 } }));
    // Smoothed lines over the raw ones, as TensorBoard draws them: the raw values stay visible, faint.
    if (w > 0) {
      traces.push(...lossTraces.map((t) => ({ x, y: col(t.key), name: `${t.name} (raw)`, mode: "lines", showlegend: false,
        yaxis: t.y2 ? "y2" : "y", opacity: 0.25, hoverinfo: "skip", line: { color: t.color, dash: t.y2 ? "dot" : "solid" } })));
    }
    draw(charts.loss, traces, baseLayout({ xaxis: xaxisOf(charts.loss),
      yaxis: { title: { text: options.lossLog ? "loss (log)" : "loss" }, type: options.lossLog ? "log" : "linear" },
      yaxis2: { title: { text: "accuracy" }, overlaying: "y", side: "right", tickformat: ".1~%", tickmode: "auto", showgrid: false } }),
    uirev, as("loss", "loss and accuracy"));

    draw(charts.sparsity, [
      { x, y: col("sparsity"), name: "sparsity", mode, line: { color: PALETTE[2] }, marker: { size: 4 } },
      { x, y: col("target_sparsity"), name: "schedule target", mode: "lines", line: { color: PALETTE[3], dash: "dash" } },
    ], baseLayout({ xaxis: xaxisOf(charts.sparsity), yaxis: { title: { text: "sparsity" }, tickformat: ".0%", range: [0, 1.02] } }),
    uirev, as("sparsity", "overall sparsity"));

    if (extras.length) {
      draw(charts.extra, extras.map((name, i) => ({
        x, y: sorted.map((e) => { const v = e.extra?.[name]; return typeof v === "number" ? v : null; }),
        name: plotlyText(name), mode, connectgaps: false, marker: { size: 4 }, line: { color: PALETTE[i % PALETTE.length] },
      // One series gets no legend from Plotly: its name went unsaid but on hover. The legend always shows, and a
      // single scalar names its axis.
      })), baseLayout({ xaxis: xaxisOf(charts.extra), hovermode: "x unified", showlegend: true,
        ...(extras.length === 1 ? { yaxis: { title: { text: plotlyText(extras[0]) } } } : {}) }),
      uirev, as("extra", "other logged scalars"));
    }

    if (!names.length) {
      // A dense run (or a script that watches no pruner) has no layer statistics: say so instead of empty axes.
      const none = "No per-layer statistics: this run records no pruned layers";
      draw(charts.heat, [], emptyLayout(none), uirev, as("layer-heatmap", "per-layer sparsity"));
      draw(charts.lines, [], emptyLayout(none), uirev, as("layer-sparsity", "per-layer sparsity over epochs"));
      draw(charts.churn, [], emptyLayout(none), uirev, as("churn", "mask churn"));
      return names;
    }
    const labels = names.map(plotlyText);
    const lookup = sorted.map((record) => new Map((record.layers || []).map((l) => [l.name, l])));
    const field = (key) => names.map((name) => lookup.map((m) => m.get(name)?.[key] ?? null));
    const sparsityZ = field("sparsity");
    draw(charts.heat, [{
      type: "heatmap", x, y: labels, z: sparsityZ, zmin: 0, zmax: 1, colorscale: "Viridis",
      colorbar: { tickformat: ".0%", thickness: 12 }, hovertemplate: "%{y}<br>epoch %{x}<br>sparsity %{z:.1%}<extra></extra>",
    }], baseLayout({ xaxis: epochAxis(null, total, { autorangeoptions: { include: [0.5, total + 0.5] } }),
      yaxis: { automargin: true, autorange: "reversed", type: "category" }, margin: { l: 60, r: 10, t: 10, b: 40 } }),
    uirev, as("layer-heatmap", "per-layer sparsity"));

    draw(charts.lines, names.map((name, i) => ({
      x, y: sparsityZ[i], name: labels[i], mode, marker: { size: 4 }, line: { color: PALETTE[i % PALETTE.length] },
      hovertemplate: "%{y:.1%}",
    })), baseLayout({ xaxis: xaxisOf(charts.lines), yaxis: { title: { text: "sparsity" }, tickformat: ".0%", range: [0, 1.02] },
      hovermode: "x unified" }), uirev, as("layer-sparsity", "per-layer sparsity over epochs"));

    drawChurn(sorted, x, names, labels, field, mode, xaxisOf(charts.churn), as("churn", "mask churn"));
    return names;
  }

  function drawChurn(sorted, x, names, labels, field, mode, xaxis, exportAs) {
    const initial = options.hideInitial ? initialPruneIndex(sorted) : -1;
    const hide = (values) => values.map((v, i) => (i === initial ? null : v));
    const pruned = field("pruned").map(hide);
    const regrown = field("regrown").map(hide);
    const log = options.churnLog;
    // A log axis cannot show 0 or negative counts: both directions count upwards as separate lines there.
    // Linear: stacked areas, not bars — one SVG path per trace stays fast at 200 epochs × 20 layers.
    const positive = (values) => values.map((v) => (v === null || v <= 0 ? null : v));
    draw(charts.churn, names.flatMap((name, i) => [
      { x, y: log ? positive(pruned[i]) : pruned[i], name: labels[i], legendgroup: labels[i], stackgroup: log ? undefined : "pruned",
        mode, marker: { size: 4 }, line: { color: PALETTE[i % PALETTE.length], width: log ? 2 : 1 },
        hovertemplate: `${labels[i]}: %{y:,} pruned<extra></extra>` },
      { x, y: log ? positive(regrown[i]) : regrown[i].map((v) => (v === null ? null : -v)), customdata: regrown[i],
        name: `${labels[i]} regrown`, legendgroup: labels[i], stackgroup: log ? undefined : "regrown", mode,
        marker: { size: 4 }, showlegend: false, line: { color: PALETTE[i % PALETTE.length], width: log ? 2 : 1, dash: "dot" },
        hovertemplate: `${labels[i]}: %{customdata:,} regrown<extra></extra>` },
    ]), baseLayout({ xaxis, yaxis: { title: { text: log ? "weights (log)" : "weights (− regrown)" }, type: log ? "log" : "linear" },
      hovermode: "x" }), uirev, exportAs);
  }

  return { el, draw: drawAll, purge: () => Object.values(charts).forEach(purge) };
}
