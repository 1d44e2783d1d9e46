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

const CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

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
  window.Plotly.react(el, args[0], args[1], CONFIG);
  for (const [event, handler] of listeners.get(el) || []) el.on(event, handler);
  listeners.delete(el);
}

/** Draw or update a chart (now if it is near the viewport, else when it gets there); the same `uirevision` keeps the user's zoom. */
export function draw(el, data, layout, uirevision) {
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
