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

/** Draw or update a chart; the same `uirevision` keeps the user's zoom across updates. */
export function draw(el, data, layout, uirevision) {
  if (!window.Plotly) return;
  window.Plotly.react(el, data, { ...layout, uirevision }, CONFIG);
}

export function purge(el) {
  if (window.Plotly && el) window.Plotly.purge(el);
}

/** Plotly is a deferred classic script; modules may run first. */
export function plotlyReady() {
  if (window.Plotly) return Promise.resolve();
  return new Promise((resolve) => {
    const script = document.querySelector('script[src$="plotly.min.js"]');
    const check = () => (window.Plotly ? resolve() : setTimeout(check, 20));
    if (script) script.addEventListener("load", () => resolve(), { once: true });
    check();
  });
}
