// The run page's mask inspector: one layer at one epoch — its mask (or what changed since the previous epoch),
// input connectivity, weight ages, the threshold, the weight-magnitude histogram, the layer table — with an epoch
// slider and a play button.

import { api, ApiError, isAbort } from "../api.js";
import { baseLayout, draw, emptyLayout, epochAxis, PALETTE, purge } from "../charts.js";
import { h, num, pct, plotlyText } from "../dom.js";
import { weightHistogram } from "./run-histogram.js";

const PLAY_MS = 600;
// Layers up to the API's largest grid are drawn weight by weight (LeNet-300-100's 300 × 784 fits); bigger
// ones are averaged over square blocks of equal size.
const FULL_RESOLUTION = 250_000;
const BINNED_CELLS = 65_536;
const CACHE_LIMIT = 200;

/** [min, max] without spreading a long array into arguments (a full-resolution layer has 250 000 values). */
function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** How many cells to ask for: every weight when the layer fits, else a grid of equal blocks. */
export function cellsFor(shape) {
  const weights = (shape || []).reduce((a, b) => a * b, 1);
  return weights > 0 && weights <= FULL_RESOLUTION ? weights : BINNED_CELLS;
}

/** `el`, and `update(sorted, names)` to call whenever the run's epochs change. */
export function maskInspector({ base, signal, uirev, onCleanup, exportName = () => "run",
  waiting = () => "Waiting for the first epoch", finished = () => false }) {
  // Everything the inspector knows and shows, in one place.
  const state = {
    sorted: [], index: -1, following: true, layer: null, playing: null,
    view: "mask", autoContrast: true, fixedConnectivity: false, agesLog: false,
    masks: { status: "loading", layers: null, lastFetch: 0, timer: null }, // loading | ok | missing | error
    connectivity: { status: "unknown", fixedMax: null }, // unknown | ok | missing
    wanted: { mask: null, conn: null, ages: null },
    cache: { grid: new Map(), changes: new Map(), conn: new Map(), ages: new Map() },
  };
  const chart = (id, label, extra = "") => h("div", { class: `chart ${extra}`, id, role: "figure", "aria-label": label });
  const charts = {
    mask: chart("chart-mask", "Mask of the selected layer at the selected epoch", "tall"),
    ages: chart("chart-ages", "How many epochs the selected layer's weights have stayed kept or pruned"),
    conn: chart("chart-connectivity", "Connections kept per input pixel at the selected epoch", "tall"),
    threshold: chart("chart-threshold", "The selected layer's pruning threshold per epoch"),
  };
  const layerSelect = h("select", { id: "mask-layer", onchange: () => { state.layer = layerSelect.value; render(); } });
  const viewSelect = h("select", { id: "mask-view", onchange: () => { state.view = viewSelect.value; render(); } },
    h("option", { value: "mask", text: "Mask" }), h("option", { value: "changes", text: "Changed since the previous epoch" }));
  const slider = h("input", { type: "range", id: "epoch-slider", min: 0, max: 0, step: 1, value: 0, "aria-label": "Epoch" });
  const epochLabel = h("output", { id: "epoch-label", for: "epoch-slider" });
  const playButton = h("button", { type: "button", id: "play", "aria-label": "Play epochs" }, "▶ Play");
  slider.addEventListener("input", () => {
    state.index = Number(slider.value);
    state.following = state.index === state.sorted.length - 1;
    render();
  });
  playButton.addEventListener("click", () => (state.playing ? stopPlaying() : startPlaying()));
  const option = (id, label, checked, onchange) => h("label", { class: "chart-option" },
    h("input", { type: "checkbox", id, checked, onchange: (event) => { onchange(event.target.checked); render(); } }), ` ${label}`);
  const maskTitle = h("p", { class: "muted chart-caption", id: "mask-caption" });
  const maskNote = h("p", { class: "muted", id: "mask-note" });
  const connTitle = h("p", { class: "muted chart-caption", id: "connectivity-caption" });
  const connCard = h("div", { id: "connectivity-card" }, h("h2", { text: "Input connectivity" }),
    h("p", { class: "help muted chart-caption", text: "How many first-layer connections each input pixel keeps (Han et al. 2015, Fig. 4)." }),
    h("div", { class: "chart-options" }, option("conn-fixed", "Fixed colour scale across epochs", false, (v) => { state.fixedConnectivity = v; })),
    connTitle, charts.conn);
  const agesTitle = h("p", { class: "muted chart-caption", id: "ages-caption" });
  const agesBox = h("div", { id: "ages-box", class: "spaced", hidden: true },
    h("h2", { text: "Weight ages" }),
    h("p", { class: "muted chart-caption", text: "Epochs since each weight's mask bit last flipped, counted from initialisation "
      + "(epoch 0 is dense): long-kept weights have settled, young ones are churning." }),
    h("div", { class: "chart-options" }, option("ages-log", "Log scale", false, (v) => { state.agesLog = v; })),
    agesTitle, charts.ages);
  const thresholdTitle = h("p", { class: "muted chart-caption", id: "threshold-caption" });
  const thresholdBox = h("div", { id: "threshold-box", class: "spaced" },
    h("h2", { text: "Pruning threshold" }),
    h("p", { class: "muted chart-caption", text: "The layer's threshold θ at each epoch (the score cut of its last mask "
      + "update), from its layer statistics; the histogram beside it shows θ among the weights at the selected epoch." }),
    thresholdTitle, charts.threshold);
  const histogram = weightHistogram({ base, signal, uirev, exportName, waiting });
  const layerTableBody = h("tbody");
  const layerTableCaption = h("caption", { class: "muted table-caption" });
  const layerTable = h("table", { id: "layer-table" }, layerTableCaption,
    h("thead", {}, h("tr", {}, ["Layer", "Shape", "Sparsity", "Threshold", "Pruned", "Regrown"]
      .map((label, i) => h("th", { scope: "col", class: i >= 2 ? "num" : "", text: label })))),
    layerTableBody);

  const el = h("section", { class: "card wide", id: "inspector", "aria-label": "Mask inspector" },
    h("h2", { text: "Masks" }),
    h("div", { class: "inspector" },
      h("label", { for: "mask-layer", text: "Layer" }), layerSelect,
      h("label", { for: "mask-view", text: "Show" }), viewSelect,
      playButton, slider, epochLabel),
    h("div", { class: "inspector-grid" },
      h("div", {}, h("h2", { text: "Mask" }),
        h("div", { class: "chart-options" }, option("mask-contrast", "Auto contrast", true, (v) => { state.autoContrast = v; })),
        maskTitle, maskNote, charts.mask),
      connCard),
    h("div", { class: "inspector-grid" }, histogram.el, thresholdBox),
    h("div", { class: "inspector-grid" }, agesBox),
    h("div", { class: "table-wrap spaced" }, layerTable));

  /** New epochs arrived: `sorted` by epoch, `names` of the layers they report. */
  function update(sorted, names) {
    state.sorted = sorted;
    // Slider: keep following the newest epoch unless the user moved away from it.
    slider.max = String(Math.max(0, sorted.length - 1));
    if (state.following || state.index < 0 || state.index >= sorted.length) state.index = sorted.length - 1;
    slider.value = String(Math.max(0, state.index));
    slider.disabled = sorted.length === 0;
    playButton.disabled = sorted.length < 2;
    if (state.masks.status !== "ok" || !state.masks.layers?.length) fillLayerSelect(names.map((name) => ({ name })));
    refreshMaskLayersSoon();
    render();
  }

  function fillLayerSelect(layers) {
    const current = [...layerSelect.options].map((o) => o.value).join("\n");
    const wanted = layers.map((l) => l.name).join("\n");
    if (current !== wanted) layerSelect.replaceChildren(...layers.map((l) => h("option", { value: l.name, text: l.name })));
    if (!state.layer || !layers.some((l) => l.name === state.layer)) state.layer = layers[0]?.name ?? null;
    if (state.layer !== null) layerSelect.value = state.layer;
  }

  function refreshMaskLayersSoon() {
    const masks = state.masks;
    if (masks.status === "missing" || masks.status === "error" || masks.timer) return;
    masks.timer = setTimeout(loadMaskLayers, Math.max(0, masks.lastFetch + 2000 - Date.now()));
  }
  onCleanup(() => clearTimeout(state.masks.timer));

  async function loadMaskLayers() {
    const masks = state.masks;
    masks.timer = null;
    masks.lastFetch = Date.now();
    try {
      const body = await api(`${base}/masks`, { signal });
      masks.layers = body.layers || [];
      masks.status = "ok";
      if (masks.layers.length) fillLayerSelect(masks.layers);
    } catch (error) {
      if (isAbort(error)) return;
      masks.status = error instanceof ApiError && error.status === 404 ? "missing" : "error";
    }
    render();
  }

  const selectedRecord = () => (state.index >= 0 ? state.sorted[state.index] : null);
  const layerInfo = (name) => state.masks.layers?.find((l) => l.name === name) || null;

  function render() {
    const record = selectedRecord();
    const sorted = state.sorted;
    epochLabel.textContent = record ? `epoch ${record.epoch} / ${sorted[sorted.length - 1].epoch}` : "no epochs yet";
    renderLayerTable(record);
    renderMask(record);
    renderConnectivity(record);
    renderAges(record);
    renderThreshold(record);
    histogram.show(state.layer, record?.epoch ?? null);
  }

  function renderLayerTable(record) {
    layerTableCaption.textContent = record ? `Layers at epoch ${record.epoch}` : "Layers";
    const layers = record?.layers || [];
    if (!layers.length) {
      // A finished run will record nothing more: say why the table stays empty rather than "yet".
      const text = !finished() ? "No per-layer statistics yet."
        : record ? "No per-layer statistics: this run records no pruned layers."
          : "No per-layer statistics: the run ended before its first epoch.";
      layerTableBody.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "empty", text })));
      return;
    }
    layerTableBody.replaceChildren(...layers.map((l) => h("tr", { class: l.name === state.layer ? "selected" : "" },
      h("td", { class: "name", text: l.name }),
      h("td", { text: (l.shape || []).join(" × ") }),
      h("td", { class: "num", text: pct(l.sparsity) }),
      h("td", { class: "num", text: num(l.threshold) }),
      h("td", { class: "num", text: num(l.pruned ?? 0) }),
      h("td", { class: "num", text: num(l.regrown ?? 0) }))));
  }

  /** The newest snapshot of the layer at or before epoch E (snapshots may be sparser than epochs). */
  function maskEpochFor(layerName, epoch) {
    const layer = layerInfo(layerName);
    if (!layer || !layer.epochs?.length) return null;
    let best = null;
    for (const e of layer.epochs) if (e <= epoch && (best === null || e > best)) best = e;
    return best;
  }

  async function renderMask(record) {
    const masks = state.masks;
    if (masks.status === "loading") { maskNote.textContent = "Loading mask snapshots…"; return; }
    if (masks.status !== "ok") {
      maskNote.textContent = masks.status === "missing" ? "Mask snapshots are not available for this run." : "Mask snapshots could not be loaded.";
      charts.mask.hidden = true;
      return;
    }
    const epoch = record ? maskEpochFor(state.layer, record.epoch) : null;
    if (epoch === null) {
      maskNote.textContent = masks.layers.length ? "No mask snapshot at or before this epoch."
        : record ? "No mask snapshot recorded yet." : `${waiting()}.`;
      charts.mask.hidden = true;
      maskTitle.textContent = "";
      return;
    }
    const layer = state.layer;
    const view = state.view;
    const cells = cellsFor(layerInfo(layer)?.shape);
    const key = `${view}:${layer}@${epoch}`;
    state.wanted.mask = key;
    const path = view === "changes" ? "changes" : "";
    let body;
    try {
      body = await cached(view === "changes" ? state.cache.changes : state.cache.grid, key,
        `${base}/masks/${encodeURIComponent(layer)}${path ? `/${path}` : ""}?epoch=${epoch}&max_cells=${cells}`);
    } catch (error) {
      if (isAbort(error)) return;
      if (state.wanted.mask === key) maskNote.textContent = `Could not load the mask: ${error.message}`;
      return;
    }
    if (state.wanted.mask !== key) return; // the user has scrubbed on
    maskNote.textContent = "";
    charts.mask.hidden = false;
    if (view === "changes") drawChanges(body, layer);
    else drawMask(body, layer);
  }

  function axes(body) {
    const [rows, cols] = body.shape.length >= 2 ? body.shape : [1, body.shape[0] || 0];
    const [gr, gc] = body.grid_shape;
    const block = body.block || Math.max(Math.ceil(rows / gr), Math.ceil(cols / gc));
    const full = gr === rows && gc === cols;
    return { rows, cols, gr, gc, full, block,
      xs: Array.from({ length: gc }, (_, i) => i * (full ? 1 : block)), ys: Array.from({ length: gr }, (_, i) => i * (full ? 1 : block)) };
  }

  function resolution({ rows, cols, gr, gc, full, block }) {
    return full ? `${rows} × ${cols} weights, one cell each` : `${rows} × ${cols} weights in ${gr} × ${gc} blocks of ${block} × ${block}`;
  }

  function drawMask(grid, layer) {
    const a = axes(grid);
    const values = a.full ? [] : grid.density.flat();
    let zmin = 0;
    let zmax = 1;
    // A 98 %-sparse layer is a uniformly dark square on a fixed 0–100 % scale: stretch to the values present.
    if (state.autoContrast && !a.full && values.length) {
      [zmin, zmax] = extent(values);
      if (zmax - zmin < 1e-6) { zmin = 0; zmax = 1; }
    }
    maskTitle.textContent = `${grid.layer} · epoch ${grid.epoch} · ${resolution(a)} · sparsity ${pct(grid.sparsity)}`
      + (zmin !== 0 || zmax !== 1 ? ` · colours stretched to ${pct(zmin)}–${pct(zmax)} kept` : "");
    charts.mask.dataset.epoch = String(grid.epoch);
    charts.mask.dataset.layer = grid.layer;
    charts.mask.dataset.view = "mask";
    draw(charts.mask, [{
      type: "heatmap", z: grid.density, x: a.xs, y: a.ys, zmin, zmax, colorscale: "Viridis", zsmooth: false,
      colorbar: { title: { text: "kept" }, tickformat: ".0%", thickness: 12 },
      hovertemplate: a.full ? "row %{y}, column %{x}<br>%{z:.0%} kept<extra></extra>" : "rows %{y}…, cols %{x}…<br>kept %{z:.1%}<extra></extra>",
    }], baseLayout({ xaxis: { title: { text: "input (column)" } }, yaxis: { title: { text: "output (row)" }, autorange: "reversed" },
      margin: { l: 50, r: 10, t: 10, b: 40 }, meta: { layer: grid.layer, epoch: grid.epoch, view: "mask", zmin, zmax } }),
    `${uirev}-mask-${layer}`, { filename: `${exportName()}-mask-${layer}-epoch-${grid.epoch}`,
      title: `${exportName()}: ${layer} mask, epoch ${grid.epoch}` });
  }

  function drawChanges(body, layer) {
    const a = axes(body);
    const neutral = cssVar("--grid") || "#e6e9ee";
    const since = body.previous_epoch ? `epoch ${body.previous_epoch}` : "initialisation (dense)";
    maskTitle.textContent = `${body.layer} · epoch ${body.epoch} against ${since} · ${num(body.pruned)} pruned (red) · `
      + `${num(body.regrown)} regrown (green) · ${resolution(a)}`;
    charts.mask.dataset.epoch = String(body.epoch);
    charts.mask.dataset.layer = body.layer;
    charts.mask.dataset.view = "changes";
    let limit = 1;
    if (state.autoContrast && !a.full) limit = Math.max(1e-6, ...extent(body.change.flat().map(Math.abs)));
    draw(charts.mask, [{
      type: "heatmap", z: body.change, x: a.xs, y: a.ys, zmin: -limit, zmax: limit, zsmooth: false,
      colorscale: [[0, "#d62728"], [0.5, neutral], [1, "#2ca02c"]],
      colorbar: { title: { text: "change" }, thickness: 12, tickvals: [-limit, 0, limit], ticktext: ["pruned", "same", "regrown"] },
      hovertemplate: a.full ? "row %{y}, column %{x}<br>%{z}<extra>−1 pruned, 1 regrown</extra>"
        : "rows %{y}…, cols %{x}…<br>regrown − pruned share %{z:.2f}<extra></extra>",
    }], baseLayout({ xaxis: { title: { text: "input (column)" } }, yaxis: { title: { text: "output (row)" }, autorange: "reversed" },
      margin: { l: 50, r: 10, t: 10, b: 40 }, meta: { layer: body.layer, epoch: body.epoch, view: "changes" } }),
    `${uirev}-mask-${layer}`, { filename: `${exportName()}-changes-${layer}-epoch-${body.epoch}`,
      title: `${exportName()}: ${layer}, weights pruned and regrown in epoch ${body.epoch}` });
  }

  const busiest = (counts) => Math.max(1, ...counts.map((row) => Math.max(...row)));
  const overImage = (shape) => Array.isArray(shape) && shape.length === 2 && [1, 3].some((channels) => {
    const side = Math.floor(Math.sqrt(shape[1] / channels));
    return shape[1] % channels === 0 && side > 1 && channels * side * side === shape[1];
  });

  async function renderConnectivity(record) {
    // Ask only once the first layer has a snapshot, and only when it is a Linear layer over a square image of 1
    // or 3 channels (what the API's map needs): a conv or a Linear over features gets no card and no 404.
    const firstLayer = state.masks.status === "ok" ? state.masks.layers[0]?.name : null;
    if (firstLayer && !overImage(layerInfo(firstLayer)?.shape)) state.connectivity.status = "missing";
    const epoch = record && firstLayer ? maskEpochFor(firstLayer, record.epoch) : null;
    if (state.connectivity.status === "missing" || epoch === null) { connCard.hidden = true; return; }
    const key = `${epoch}:${state.fixedConnectivity}`;
    state.wanted.conn = key;
    let body;
    let scaleMax = null;
    try {
      body = await cached(state.cache.conn, epoch, `${base}/connectivity?epoch=${epoch}`);
      if (state.fixedConnectivity) {
        // One scale for every epoch: the busiest pixel of the first snapshot (the densest, before pruning took
        // hold), so brightness can be compared while playing.
        const first = layerInfo(firstLayer).epochs[0];
        const start = await cached(state.cache.conn, first, `${base}/connectivity?epoch=${first}`);
        scaleMax = Math.max(busiest(start.counts), busiest(body.counts));
      }
    } catch (error) {
      if (isAbort(error)) return;
      if (error instanceof ApiError && error.status === 404) { state.connectivity.status = "missing"; connCard.hidden = true; }
      else if (state.wanted.conn === key) connTitle.textContent = `Could not load connectivity: ${error.message}`;
      return;
    }
    if (state.wanted.conn !== key) return;
    state.connectivity.status = "ok";
    connCard.hidden = false;
    const [hgt, wid] = body.image_shape;
    // Scaled to the busiest pixel, not to the possible maximum: at 98 % sparsity the picture would be all black.
    const zmax = scaleMax ?? busiest(body.counts);
    connTitle.textContent = `${body.layer} · epoch ${body.epoch} · ${hgt} × ${wid} inputs · each could keep ${body.max} connections`
      + ` · colour scale 0–${zmax}${scaleMax === null ? " (this epoch)" : " (fixed)"}`;
    draw(charts.conn, [{
      type: "heatmap", z: body.counts, zmin: 0, zmax, colorscale: "Hot",
      colorbar: { title: { text: "kept" }, thickness: 12 }, hovertemplate: "pixel (%{y}, %{x})<br>%{z} connections<extra></extra>",
    }], baseLayout({ xaxis: { showgrid: false, constrain: "domain" }, yaxis: { showgrid: false, autorange: "reversed", scaleanchor: "x" },
      margin: { l: 30, r: 10, t: 10, b: 30 }, meta: { epoch: body.epoch, zmax } }), `${uirev}-conn`,
    { filename: `${exportName()}-connectivity-epoch-${body.epoch}`, title: `${exportName()}: input connectivity, epoch ${body.epoch}` });
  }

  async function renderAges(record) {
    const layer = state.layer;
    const epoch = state.masks.status === "ok" && record ? maskEpochFor(layer, record.epoch) : null;
    if (epoch === null) { agesBox.hidden = true; return; }
    const key = `${layer}@${epoch}`;
    state.wanted.ages = key;
    let body;
    try {
      body = await cached(state.cache.ages, key, `${base}/masks/${encodeURIComponent(layer)}/stability?epoch=${epoch}`);
    } catch (error) {
      if (isAbort(error)) return;
      if (state.wanted.ages === key) agesBox.hidden = true;
      return;
    }
    if (state.wanted.ages !== key) return;
    agesBox.hidden = false;
    const labels = body.edges.slice(0, -1).map((lo, i) => {
      const hi = body.edges[i + 1] - 1;
      return hi <= lo ? String(lo) : `${lo}–${hi}`;
    });
    agesTitle.textContent = `${body.layer} · epoch ${body.epoch} · ${num(body.never_changed)} of ${num(body.total)} weights `
      + "never flipped since initialisation";
    const log = state.agesLog;
    const positive = (values) => (log ? values.map((v) => (v > 0 ? v : null)) : values);
    draw(charts.ages, [
      { type: "bar", x: labels, y: positive(body.kept), name: "kept", marker: { color: PALETTE[4] }, hovertemplate: "%{y:,} kept for %{x} epochs<extra></extra>" },
      { type: "bar", x: labels, y: positive(body.pruned), name: "pruned", marker: { color: cssVar("--muted") }, hovertemplate: "%{y:,} pruned for %{x} epochs<extra></extra>" },
    ], baseLayout({ barmode: "group", xaxis: { title: { text: "epochs unchanged" }, type: "category" },
      yaxis: { title: { text: log ? "weights (log)" : "weights" }, type: log ? "log" : "linear" },
      meta: { layer: body.layer, epoch: body.epoch } }), `${uirev}-ages`,
    { filename: `${exportName()}-ages-${layer}-epoch-${body.epoch}`, title: `${exportName()}: ${layer} weight ages, epoch ${body.epoch}` });
  }

  function renderThreshold(record) {
    const layer = state.layer;
    const points = state.sorted.map((r) => [r.epoch, (r.layers || []).find((l) => l.name === layer)?.threshold ?? null])
      .filter(([, t]) => t !== null && t !== undefined);
    const exportAs = { filename: `${exportName()}-threshold-${layer}`, title: `${exportName()}: ${layer} pruning threshold` };
    if (!points.length) {
      thresholdTitle.textContent = "";
      draw(charts.threshold, [], emptyLayout(layer && state.sorted.length ? `No threshold recorded for ${layer}` : waiting()), `${uirev}-threshold`, exportAs);
      return;
    }
    const total = state.sorted[state.sorted.length - 1].epoch;
    const here = points.find(([e]) => e === record?.epoch);
    thresholdTitle.textContent = `${layer} · threshold ${here ? num(here[1]) : "—"} at epoch ${record?.epoch ?? "—"}`;
    draw(charts.threshold, [{ x: points.map(([e]) => e), y: points.map(([, t]) => t), name: plotlyText(layer), mode: "lines+markers",
      marker: { size: 4 }, line: { color: PALETTE[2] }, hovertemplate: "epoch %{x}<br>θ = %{y:.4g}<extra></extra>" }],
    baseLayout({ xaxis: epochAxis(charts.threshold, total), yaxis: { title: { text: "threshold θ" } },
      shapes: record ? [{ type: "line", xref: "x", yref: "paper", x0: record.epoch, x1: record.epoch, y0: 0, y1: 1,
        line: { color: cssVar("--muted"), dash: "dot", width: 1 } }] : [] }), `${uirev}-threshold`, exportAs);
  }

  /** One request per key, shared by concurrent renders; failures are not kept, so a later render retries. */
  function cached(cache, key, url) {
    if (!cache.has(key)) {
      if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value);
      const promise = api(url, { signal });
      cache.set(key, promise);
      promise.catch(() => cache.delete(key));
    }
    return cache.get(key);
  }

  function startPlaying() {
    if (state.sorted.length < 2) return;
    if (state.index >= state.sorted.length - 1) state.index = 0;
    playButton.textContent = "❚❚ Pause";
    playButton.setAttribute("aria-label", "Pause");
    state.following = false;
    state.playing = setInterval(() => {
      state.index = Math.min(state.sorted.length - 1, state.index + 1);
      slider.value = String(state.index);
      render();
      if (state.index >= state.sorted.length - 1) { state.following = true; stopPlaying(); }
    }, PLAY_MS);
    slider.value = String(state.index);
    render();
  }
  function stopPlaying() {
    clearInterval(state.playing);
    state.playing = null;
    playButton.textContent = "▶ Play";
    playButton.setAttribute("aria-label", "Play epochs");
  }
  onCleanup(stopPlaying);

  return { el, update, rerender: render, purge: () => { Object.values(charts).forEach(purge); histogram.purge(); } };
}
