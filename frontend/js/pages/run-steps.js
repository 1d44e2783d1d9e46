// A tracked run's in-epoch points (`run.log(step=..., **scalars)`): one chart over global steps, filled from
// GET /api/tracked-runs/{id}/points and then live from the stream's `points` events, so a long epoch charts live.

import { api, isAbort } from "../api.js";
import { baseLayout, draw, lineMode, PALETTE, purge } from "../charts.js";
import { h, plotlyText } from "../dom.js";

const PAGE = 5000;
const MAX_PAGES = 40; // 200 000 points: beyond that the chart would stall the page; the export has them all

/** `el` (hidden until a point arrives), `load()`, `add(points)`, `poll()` and `purge()`. */
export function stepChart({ runId, signal, uirev, exportName }) {
  const chart = h("div", { class: "chart", id: "chart-steps", role: "figure", "aria-label": "Scalars logged inside epochs, by step" });
  const caption = h("p", { class: "muted chart-caption", id: "steps-caption" });
  const el = h("section", { class: "card wide", id: "steps-card", hidden: true },
    h("h2", { text: "Steps" }),
    h("p", { class: "muted chart-caption", text: "Scalars the script logged inside its epochs with run.log(step=…), "
      + "by global step; they arrive live, before the epoch ends." }),
    caption, chart);
  const points = new Map(); // step -> { step, epoch, values }
  let frame = null;
  let newest = -1; // the highest step held: where a poll resumes

  function add(items) {
    for (const point of items || []) {
      if (!Number.isInteger(point.step)) continue;
      points.set(point.step, point);
      newest = Math.max(newest, point.step);
    }
    if (!frame) frame = requestAnimationFrame(() => { frame = null; render(); });
  }

  async function fetchAfter(after) {
    let cursor = after;
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const body = await api(`/api/tracked-runs/${runId}/points?after=${cursor}&limit=${PAGE}`, { signal });
      add(body.items);
      if (body.items.length < PAGE) return;
      cursor = body.items[body.items.length - 1].step;
    }
  }

  /** Everything stored so far; errors leave the chart as it is (the stream or the next poll fills in). */
  async function load() {
    try { await fetchAfter(-1); } catch (error) { if (!isAbort(error)) caption.textContent = `Could not load steps: ${error.message}`; }
  }

  async function poll() {
    try { await fetchAfter(newest); } catch (error) { if (!isAbort(error)) console.warn("points poll failed", error); }
  }

  function render() {
    if (!points.size) return;
    el.hidden = false;
    const sorted = [...points.values()].sort((a, b) => a.step - b.step);
    const names = [];
    for (const point of sorted) for (const name of Object.keys(point.values || {})) if (!names.includes(name)) names.push(name);
    const x = sorted.map((p) => p.step);
    const epochs = sorted.map((p) => p.epoch ?? "—");
    const last = sorted[sorted.length - 1];
    caption.textContent = `${sorted.length.toLocaleString()} points · step ${last.step}`
      + (last.epoch ? ` · epoch ${last.epoch}` : "") + ` · ${names.join(", ")}`;
    draw(chart, names.map((name, i) => ({
      x, y: sorted.map((p) => p.values?.[name] ?? null), customdata: epochs, name: plotlyText(name),
      mode: lineMode(sorted.length),
      line: { color: PALETTE[i % PALETTE.length], width: 1.5 },
      hovertemplate: `${plotlyText(name)} %{y:.4g}<br>step %{x}, epoch %{customdata}<extra></extra>`,
    })), baseLayout({ xaxis: { title: { text: "step" } }, yaxis: { title: { text: "value" } }, hovermode: "x unified" }),
    `${uirev}-steps`, { filename: `${exportName()}-steps`, title: `${exportName()}: scalars by step` });
  }

  return { el, load, add, poll, purge: () => { if (frame) cancelAnimationFrame(frame); purge(chart); } };
}
