// The mask inspector's weight-magnitude histogram: one layer at one epoch, read from GET /layers/{layer}?epoch=
// (one epoch's stats, not every epoch's), with the layer's pruning threshold drawn in as a vertical line.

import { api, isAbort } from "../api.js";
import { baseLayout, draw, emptyLayout, PALETTE, purge } from "../charts.js";
import { h, num } from "../dom.js";

const CACHE_LIMIT = 200;

/** Step-shaped x/y of a histogram (edges: n + 1 values, counts: n) that a filled `hv` line draws as bars. */
export function steps(edges, counts) {
  const x = [edges[0]];
  const y = [0];
  counts.forEach((count, i) => { x.push(edges[i]); y.push(count); });
  x.push(edges[edges.length - 1], edges[edges.length - 1]);
  y.push(counts[counts.length - 1], 0);
  return { x, y };
}

/** `el`, `show(layer, epoch)` to call on every inspector render, and `purge()`. */
export function weightHistogram({ base, signal, uirev, exportName, waiting = () => "Waiting for the first epoch" }) {
  const chart = h("div", { class: "chart", id: "chart-histogram", role: "figure",
    "aria-label": "Weight magnitudes of the selected layer at the selected epoch, with its pruning threshold" });
  const caption = h("p", { class: "muted chart-caption", id: "histogram-caption" });
  const el = h("div", { id: "histogram-box", class: "spaced" },
    h("h2", { text: "Weight magnitudes" }),
    h("p", { class: "muted chart-caption", text: "How many of the layer's weights have each magnitude |w| at the end of the "
      + "selected epoch (log scale; exact zeros left out), and how many of them the mask keeps. The dashed line is the "
      + "layer's pruning threshold θ: with the magnitude criterion, kept weights lie to its right. For splice and "
      + "feedback runs the histogram shows the dense weights, pruned ones included." }),
    caption, chart);
  const cache = new Map();
  let wanted = null;

  function load(layer, epoch) {
    const key = `${layer}@${epoch}`;
    if (!cache.has(key)) {
      if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value);
      const promise = api(`${base}/layers/${encodeURIComponent(layer)}?epoch=${epoch}`, { signal });
      cache.set(key, promise);
      promise.catch(() => cache.delete(key));
    }
    return cache.get(key);
  }

  async function show(layer, epoch) {
    const exportAs = { filename: `${exportName()}-histogram-${layer}-epoch-${epoch}`,
      title: `${exportName()}: ${layer} weight magnitudes, epoch ${epoch}` };
    if (!layer || !epoch) {
      caption.textContent = "";
      draw(chart, [], emptyLayout(waiting()), `${uirev}-histogram`, exportAs);
      return;
    }
    const key = `${layer}@${epoch}`;
    wanted = key;
    let stats;
    try {
      stats = await load(layer, epoch);
    } catch (error) {
      if (isAbort(error) || wanted !== key) return;
      caption.textContent = `Could not load the histogram: ${error.message}`;
      return;
    }
    if (wanted !== key) return; // the user has scrubbed on
    const hist = stats.histogram;
    if (!hist || !hist.counts?.length) {
      caption.textContent = `${layer} · epoch ${epoch}`;
      draw(chart, [], emptyLayout(`No weight histogram recorded for ${layer} at epoch ${epoch}`, { meta: { layer, epoch } }),
        `${uirev}-histogram`, exportAs);
      return;
    }
    const threshold = typeof stats.threshold === "number" && stats.threshold > 0 ? stats.threshold : null;
    const total = hist.counts.reduce((a, b) => a + b, 0);
    const kept = hist.kept ? hist.kept.reduce((a, b) => a + b, 0) : null;
    caption.textContent = `${layer} · epoch ${epoch} · ${num(total)} non-zero weights`
      + (kept === null ? "" : ` · ${num(kept)} kept by the mask`)
      + (threshold === null ? " · no threshold recorded" : ` · threshold θ = ${num(threshold)}`);
    const all = steps(hist.edges, hist.counts);
    const traces = [{ ...all, name: "all weights", mode: "lines", line: { shape: "hv", color: PALETTE[9], width: 1 },
      fill: "tozeroy", hoverinfo: "skip" }];
    if (hist.kept) {
      traces.push({ ...steps(hist.edges, hist.kept), name: "kept by the mask", mode: "lines", fill: "tozeroy",
        line: { shape: "hv", color: PALETTE[4], width: 1 }, hoverinfo: "skip" });
    }
    // Invisible markers at the bin centres carry the hover text (the step lines have no bin-sized points).
    const centres = hist.counts.map((_, i) => Math.sqrt(hist.edges[i] * hist.edges[i + 1]));
    traces.push({ x: centres, y: hist.counts, mode: "markers", marker: { opacity: 0 }, showlegend: false, name: "bin",
      customdata: hist.counts.map((_, i) => [hist.edges[i], hist.edges[i + 1], hist.kept ? hist.kept[i] : null]),
      hovertemplate: "|w| in %{customdata[0]:.3g}–%{customdata[1]:.3g}<br>%{y:,} weights"
        + (hist.kept ? ", %{customdata[2]:,} kept" : "") + "<extra></extra>" });
    draw(chart, traces, baseLayout({
      xaxis: { title: { text: "|w| (log)" }, type: "log" }, yaxis: { title: { text: "weights" }, rangemode: "tozero" },
      hovermode: "closest",
      shapes: threshold === null ? [] : [{ type: "line", xref: "x", yref: "paper", x0: threshold, x1: threshold, y0: 0, y1: 1,
        line: { color: PALETTE[2], dash: "dash", width: 2 } }],
      annotations: threshold === null ? [] : [{ xref: "x", yref: "paper", x: Math.log10(threshold), y: 1, yanchor: "bottom",
        text: "θ", showarrow: false, font: { color: PALETTE[2] } }],
      meta: { layer, epoch, threshold },
    }), `${uirev}-histogram`, exportAs);
  }

  return { el, show, purge: () => purge(chart) };
}
