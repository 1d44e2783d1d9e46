// Plotly glue: theme-aware layouts and one `draw` that updates in place (Plotly.react keeps zoom via uirevision).

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
  "#ff9da7", "#9c755f", "#bab0ac"];

export function baseLayout(extra = {}) {
  const fg = css("--fg"), muted = css("--muted"), grid = css("--grid");
  const axis = { gridcolor: grid, zerolinecolor: grid, linecolor: grid, tickfont: { color: muted },
    title: { font: { color: muted, size: 12 } }, automargin: true };
  const layout = {
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { color: fg, size: 12, family: "system-ui, sans-serif" },
    margin: { l: 50, r: 20, t: 10, b: 40 },
    // Above the plot: below it, a wrapped legend runs into the x-axis title on narrow screens.
    legend: { orientation: "h", x: 0, xanchor: "left", y: 1.02, yanchor: "bottom", font: { color: fg } },
    hoverlabel: { namelength: -1 },
    modebar: { bgcolor: "rgba(0,0,0,0)", color: muted, activecolor: fg },
    xaxis: { ...axis }, yaxis: { ...axis },
  };
  for (const [key, value] of Object.entries(extra)) {
    layout[key] = key.startsWith("xaxis") || key.startsWith("yaxis") ? { ...axis, ...value, title: { ...axis.title, ...(value.title || {}) } } : value;
  }
  return layout;
}

// Self-hosted data stays here: no Plotly logo, no "edit in Chart Studio" / "send to cloud" links. Plotly's own
// PNG button is replaced by one that titles the picture, names the file and paints it on white.
const exportInfo = new WeakMap(); // element -> { filename, title }
let config = null;
function chartConfig() {
  if (!config) {
    config = {
      responsive: true, displaylogo: false, showLink: false, showSendToCloud: false, showEditInChartStudio: false,
      modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"],
      modeBarButtonsToAdd: [{ name: "download-png", title: "Download as PNG", icon: window.Plotly.Icons.camera,
        click: (gd) => { exportPng(gd).catch((error) => console.warn("PNG export failed", error)); } }],
      toImageButtonOptions: { format: "png", scale: 2 },
    };
  }
  return config;
}

/** A file name from free text: letters, digits, dots and dashes only. */
export function slug(text) {
  return String(text ?? "").toLowerCase().normalize("NFKD").replace(/[^a-z0-9.]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 80)
    || "chart";
}

/** Name and title the chart's PNG export: `filename` (without .png) and a title drawn above the plot. */
export function setExport(el, { filename, title }) {
  exportInfo.set(el, { filename: slug(filename), title: String(title ?? "") });
}

const LIGHT = { fg: "#1b1f24", muted: "#5b6470", grid: "#e6e9ee" };

/** The chart as a titled PNG on white (whatever the theme), downloaded under its export name. */
export async function exportPng(gd) {
  const info = exportInfo.get(gd) || { filename: "chart", title: "" };
  const layout = JSON.parse(JSON.stringify(gd.layout || {}));
  for (const key of Object.keys(layout)) {
    if (!/^[xy]axis\d*$/.test(key)) continue;
    Object.assign(layout[key], { gridcolor: LIGHT.grid, zerolinecolor: LIGHT.grid, linecolor: LIGHT.grid,
      tickfont: { ...(layout[key].tickfont || {}), color: LIGHT.muted } });
    if (layout[key].title) layout[key].title = { ...layout[key].title, font: { ...(layout[key].title.font || {}), color: LIGHT.muted } };
  }
  Object.assign(layout, {
    paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff", font: { ...(layout.font || {}), color: LIGHT.fg },
    title: { text: plotlyTitle(info.title), x: 0.01, xanchor: "left", font: { size: 15, color: LIGHT.fg } },
    margin: { ...(layout.margin || {}), t: ((layout.margin || {}).t || 10) + 50 },
    legend: { ...(layout.legend || {}), font: { color: LIGHT.fg } },
  });
  const width = Math.max(600, gd.offsetWidth || 900);
  const height = Math.max(360, (gd.offsetHeight || 400) + 50);
  const url = await window.Plotly.toImage({ data: gd.data, layout, config: { displaylogo: false } },
    { format: "png", width, height, scale: 2 });
  const link = document.createElement("a");
  link.href = url;
  link.download = `${info.filename}.png`;
  document.body.append(link);
  link.click();
  link.remove();
}

const plotlyTitle = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** A layout for a chart with nothing to draw yet: no axes, one line saying what it waits for. */
export function emptyLayout(message, extra = {}) {
  return baseLayout({
    ...extra,
    xaxis: { visible: false }, yaxis: { visible: false },
    annotations: [{ text: plotlyTitle(message), showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5,
      font: { color: css("--muted"), size: 13 } }],
  });
}

/** Whole-number tick spacing for `span` epochs: 1, 2, 5, 10, 20, 50, … with at most about 10 ticks. */
export function epochStep(span) {
  const raw = Math.max(1, span / 10);
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return Math.max(1, m * power);
  return Math.max(1, 10 * power);
}

/** An epoch x axis whose ticks are whole epochs, for the span in view (the user's zoom, else 0…total). */
export function epochAxis(el, total, extra = {}) {
  const range = el?.layout?.xaxis?.autorange === false ? el.layout.xaxis.range : null;
  const span = range ? Math.abs(range[1] - range[0]) : total;
  return { title: { text: "epoch" }, tick0: 0, dtick: epochStep(span), tickformat: "d", ...extra };
}

/** Keep whole-epoch ticks while the user zooms (Plotly would otherwise tick at 1.5, 2.5). */
export function keepEpochTicks(el) {
  onChart(el, "plotly_relayout", (change) => {
    if (!Object.keys(change).some((key) => key.startsWith("xaxis.range") || key === "xaxis.autorange")) return;
    const range = el._fullLayout?.xaxis?.range;
    if (!range) return;
    const dtick = epochStep(Math.abs(range[1] - range[0]));
    if (el.layout.xaxis?.dtick !== dtick) window.Plotly.relayout(el, { "xaxis.dtick": dtick });
  });
}

/** TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0. */
/** A trace's mode for `count` points: one point gets a marker, since a line alone draws nothing. */
export const lineMode = (count) => (count === 1 ? "lines+markers" : "lines");

export function smooth(values, weight) {
  if (!weight) return values;
  let last = 0;
  let count = 0;
  return values.map((v) => {
    if (v === null || v === undefined || !isFinite(v)) return v;
    count += 1;
    last = last * weight + (1 - weight) * v;
    return last / (1 - weight ** count);
  });
}

// Charts off screen are drawn when they scroll near the viewport: a run page has many charts, and drawing
// only the visible ones keeps a 200-epoch × 20-layer page interactive within a second (and live updates cheap).
const pending = new Map(); // element -> [data, layout]
const visible = new WeakSet();
const listeners = new WeakMap(); // element -> [[event, handler]] to attach once Plotly owns the element
const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (entry.isIntersecting) {
      visible.add(entry.target);
      flush(entry.target);
    } else visible.delete(entry.target);
  }
}, { rootMargin: "200px 0px" });

function flush(el) {
  const args = pending.get(el);
  if (!args || !window.Plotly) return;
  pending.delete(el);
  window.Plotly.react(el, args[0], args[1], chartConfig());
  for (const [event, handler] of listeners.get(el) || []) el.on(event, handler);
  listeners.delete(el);
}

/**
 * Draw or update a chart (now if it is near the viewport, else when it gets there); the same `uirevision` keeps the
 * user's zoom. `exportAs` ({filename, title}) names its PNG download.
 */
export function draw(el, data, layout, uirevision, exportAs) {
  if (exportAs) setExport(el, exportAs);
  if (!pending.has(el) && !el.dataset.observed) {
    el.dataset.observed = "1";
    observer.observe(el);
  }
  pending.set(el, [data, { ...layout, uirevision }]);
  if (visible.has(el)) flush(el);
}

/** A Plotly event handler (plotly_click, ...), attached once the chart has been drawn. */
export function onChart(el, event, handler) {
  if (typeof el.on === "function") el.on(event, handler);
  else listeners.set(el, [...(listeners.get(el) || []), [event, handler]]);
}

export function purge(el) {
  if (!el) return;
  observer.unobserve(el);
  delete el.dataset.observed;
  pending.delete(el);
  visible.delete(el);
  if (window.Plotly) window.Plotly.purge(el);
}

let plotlyLoading = null;

/**
 * Plotly (3.5 MB) loads on demand: the runs list does not need it, so it is fetched when a page with charts
 * asks, or when the browser is idle (see app.js), whichever comes first.
 */
export function plotlyReady() {
  if (window.Plotly) return Promise.resolve();
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/static/plotly.min.js";
      script.async = true;
      script.addEventListener("load", () => resolve(), { once: true });
      script.addEventListener("error", () => {
        plotlyLoading = null;
        reject(new Error("the chart library (/static/plotly.min.js) did not load"));
      }, { once: true });
      document.head.append(script);
    });
  }
  return plotlyLoading;
}
