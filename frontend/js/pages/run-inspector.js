// The run page's mask inspector: one layer at one epoch — density grid, input connectivity, weight ages, layer table —
// with an epoch slider and a play button.

import { api, ApiError, isAbort } from "../api.js";
import { baseLayout, draw, PALETTE, purge } from "../charts.js";
import { h, num, pct } from "../dom.js";

const PLAY_MS = 600;
const MASK_CELLS = 4096;

/** `el`, and `update(sorted, names)` to call whenever the run's epochs change. */
export function maskInspector({ base, signal, uirev, onCleanup }) {
  const inspector = { index: -1, following: true, layer: null, playing: null };
  let sorted = [];
  let maskLayers = null; // [{name, shape, epochs}] once /masks answered; [] when none yet
  let masksState = "loading"; // loading | ok | missing | error
  let connState = "unknown"; // unknown | ok | missing
  const gridCache = new Map();
  const connCache = new Map();
  const agesCache = new Map();
  const chart = (id, label, extra = "") => h("div", { class: `chart ${extra}`, id, role: "figure", "aria-label": label });
  const charts = {
    mask: chart("chart-mask", "Mask density grid of the selected layer at the selected epoch", "tall"),
    ages: chart("chart-ages", "How many epochs the selected layer's weights have stayed kept or pruned"),
    conn: chart("chart-connectivity", "Connections kept per input pixel at the selected epoch", "tall"),
  };
  const layerSelect = h("select", { id: "mask-layer", onchange: () => { inspector.layer = layerSelect.value; renderInspector(); } });
  const slider = h("input", { type: "range", id: "epoch-slider", min: 0, max: 0, step: 1, value: 0, "aria-label": "Epoch" });
  const epochLabel = h("output", { id: "epoch-label", for: "epoch-slider" });
  const playButton = h("button", { type: "button", id: "play", "aria-label": "Play epochs" }, "▶ Play");
  slider.addEventListener("input", () => {
    inspector.index = Number(slider.value);
    inspector.following = inspector.index === sorted.length - 1;
    renderInspector();
  });
  playButton.addEventListener("click", () => (inspector.playing ? stopPlaying() : startPlaying()));
  const maskTitle = h("p", { class: "muted", id: "mask-caption", style: "margin:0 0 4px" });
  const maskNote = h("p", { class: "muted", id: "mask-note" });
  const connTitle = h("p", { class: "muted", id: "connectivity-caption", style: "margin:0 0 4px" });
  const connCard = h("div", {}, h("h2", { text: "Input connectivity" }), h("p", { class: "help muted", style: "margin:0 0 4px",
    text: "How many first-layer connections each input pixel keeps (Han et al. 2015, Fig. 4)." }), connTitle, charts.conn);
  connCard.id = "connectivity-card";
  const agesTitle = h("p", { class: "muted", id: "ages-caption", style: "margin:0 0 4px" });
  const agesBox = h("div", { id: "ages-box", style: "margin-top:12px", hidden: true },
    h("h2", { text: "Weight ages" }),
    h("p", { class: "muted", style: "margin:0 0 4px", text: "Epochs since each weight's mask bit last flipped: long-kept weights have settled, young ones are churning." }),
    agesTitle, charts.ages);
  const layerTableBody = h("tbody");
  const layerTableCaption = h("caption", { class: "muted", style: "text-align:left;padding:6px 10px" });
  const layerTable = h("table", { id: "layer-table" }, layerTableCaption,
    h("thead", {}, h("tr", {}, ["Layer", "Shape", "Sparsity", "Threshold", "Pruned", "Regrown"]
      .map((label, i) => h("th", { scope: "col", class: i >= 2 ? "num" : "", text: label })))),
    layerTableBody);

  const el = h("section", { class: "card wide", id: "inspector", "aria-label": "Mask inspector" },
    h("h2", { text: "Masks" }),
    h("div", { class: "inspector" },
      h("label", { for: "mask-layer", text: "Layer" }), layerSelect,
      playButton, slider, epochLabel),
    h("div", { class: "inspector-grid" },
      h("div", {}, h("h2", { text: "Mask density" }), maskTitle, maskNote, charts.mask),
      connCard),
    agesBox,
    h("div", { class: "table-wrap", style: "margin-top:12px" }, layerTable));

  /** New epochs arrived: `sorted` by epoch, `names` of the layers they report. */
  function update(newSorted, names) {
    sorted = newSorted;
    // Slider: keep following the newest epoch unless the user moved away from it.
    slider.max = String(Math.max(0, sorted.length - 1));
    if (inspector.following || inspector.index < 0 || inspector.index >= sorted.length) inspector.index = sorted.length - 1;
    slider.value = String(Math.max(0, inspector.index));
    slider.disabled = sorted.length === 0;
    playButton.disabled = sorted.length < 2;
    if (masksState !== "ok" || !maskLayers?.length) fillLayerSelect(names.map((name) => ({ name })));
    refreshMaskLayersSoon();
    renderInspector();
  }

  // ---- inspector: mask density grid, connectivity, per-layer table at one epoch -----------------------------
  function fillLayerSelect(layers) {
    const current = [...layerSelect.options].map((o) => o.value).join("\n");
    const wanted = layers.map((l) => l.name).join("\n");
    if (current !== wanted) layerSelect.replaceChildren(...layers.map((l) => h("option", { value: l.name, text: l.name })));
    if (!inspector.layer || !layers.some((l) => l.name === inspector.layer)) inspector.layer = layers[0]?.name ?? null;
    if (inspector.layer !== null) layerSelect.value = inspector.layer;
  }

  let lastMaskListFetch = 0;
  let maskListTimer = null;
  function refreshMaskLayersSoon() {
    if (masksState === "missing" || masksState === "error" || maskListTimer) return;
    const wait = Math.max(0, lastMaskListFetch + 2000 - Date.now());
    maskListTimer = setTimeout(loadMaskLayers, wait);
  }
  onCleanup(() => clearTimeout(maskListTimer));

  async function loadMaskLayers() {
    maskListTimer = null;
    lastMaskListFetch = Date.now();
    try {
      const body = await api(`${base}/masks`, { signal: signal });
      maskLayers = body.layers || [];
      masksState = "ok";
      if (maskLayers.length) fillLayerSelect(maskLayers);
    } catch (error) {
      if (isAbort(error)) return;
      masksState = error instanceof ApiError && error.status === 404 ? "missing" : "error";
    }
    renderInspector();
  }

  function selectedRecord() {
    return inspector.index >= 0 ? sorted[inspector.index] : null;
  }

  function renderInspector() {
    const record = selectedRecord();
    epochLabel.textContent = record ? `epoch ${record.epoch} / ${sorted[sorted.length - 1].epoch}` : "no epochs yet";
    renderLayerTable(record);
    renderMask(record);
    renderConnectivity(record);
    renderAges(record);
  }

  function renderLayerTable(record) {
    layerTableCaption.textContent = record ? `Layers at epoch ${record.epoch}` : "Layers";
    const layers = record?.layers || [];
    if (!layers.length) {
      layerTableBody.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "empty", text: "No per-layer statistics yet." })));
      return;
    }
    layerTableBody.replaceChildren(...layers.map((l) => h("tr", { class: l.name === inspector.layer ? "selected" : "" },
      h("td", { class: "name", text: l.name }),
      h("td", { text: (l.shape || []).join(" × ") }),
      h("td", { class: "num", text: pct(l.sparsity) }),
      h("td", { class: "num", text: num(l.threshold) }),
      h("td", { class: "num", text: num(l.pruned ?? 0) }),
      h("td", { class: "num", text: num(l.regrown ?? 0) }))));
  }

  /** The newest snapshot of the layer at or before epoch E (snapshots may be sparser than epochs). */
  function maskEpochFor(layerName, epoch) {
    const layer = maskLayers?.find((l) => l.name === layerName);
    if (!layer || !layer.epochs?.length) return null;
    let best = null;
    for (const e of layer.epochs) if (e <= epoch && (best === null || e > best)) best = e;
    return best;
  }

  async function renderMask(record) {
    if (masksState === "loading") { maskNote.textContent = "Loading mask snapshots…"; return; }
    if (masksState !== "ok") {
      maskNote.textContent = masksState === "missing" ? "Mask snapshots are not available for this run." : "Mask snapshots could not be loaded.";
      charts.mask.hidden = true;
      return;
    }
    const epoch = record ? maskEpochFor(inspector.layer, record.epoch) : null;
    if (epoch === null) {
      maskNote.textContent = maskLayers.length ? "No mask snapshot at or before this epoch." : "No mask snapshot recorded yet.";
      charts.mask.hidden = true;
      maskTitle.textContent = "";
      return;
    }
    const layer = inspector.layer;
    const key = `${layer}@${epoch}`;
    inspector.wantedMask = key;
    let grid;
    try {
      grid = await cached(gridCache, key, `${base}/masks/${encodeURIComponent(layer)}?epoch=${epoch}&max_cells=${MASK_CELLS}`);
    } catch (error) {
      if (isAbort(error)) return;
      if (inspector.wantedMask === key) maskNote.textContent = `Could not load the mask: ${error.message}`;
      return;
    }
    if (inspector.wantedMask !== key) return; // the user has scrubbed on
    maskNote.textContent = "";
    charts.mask.hidden = false;
    const [rows, cols] = grid.shape.length >= 2 ? grid.shape : [1, grid.shape[0] || 0];
    const [gr, gc] = grid.grid_shape;
    maskTitle.textContent = `${grid.layer} · epoch ${grid.epoch} · ${rows} × ${cols} weights in ${gr} × ${gc} cells · sparsity ${pct(grid.sparsity)}`;
    charts.mask.dataset.epoch = String(grid.epoch);
    charts.mask.dataset.layer = grid.layer;
    const xs = Array.from({ length: gc }, (_, i) => Math.round((i * cols) / gc));
    const ys = Array.from({ length: gr }, (_, i) => Math.round((i * rows) / gr));
    draw(charts.mask, [{
      type: "heatmap", z: grid.density, x: xs, y: ys, zmin: 0, zmax: 1, colorscale: "Viridis",
      colorbar: { title: { text: "kept" }, tickformat: ".0%", thickness: 12 },
      hovertemplate: "rows %{y}…, cols %{x}…<br>kept %{z:.1%}<extra></extra>",
    }], baseLayout({ xaxis: { title: { text: "input (column)" } }, yaxis: { title: { text: "output (row)" }, autorange: "reversed" },
      margin: { l: 50, r: 10, t: 10, b: 40 }, meta: { layer: grid.layer, epoch: grid.epoch } }), `${uirev}-mask-${layer}`);
  }

  async function renderConnectivity(record) {
    // Ask only once the first layer has a snapshot: then a 404 means "not a Linear layer over an image".
    const firstLayer = masksState === "ok" ? maskLayers[0]?.name : null;
    const epoch = record && firstLayer ? maskEpochFor(firstLayer, record.epoch) : null;
    if (connState === "missing" || epoch === null) { connCard.hidden = true; return; }
    inspector.wantedConn = epoch;
    let body;
    try {
      body = await cached(connCache, epoch, `${base}/connectivity?epoch=${epoch}`);
    } catch (error) {
      if (isAbort(error)) return;
      if (error instanceof ApiError && error.status === 404) { connState = "missing"; connCard.hidden = true; }
      else if (inspector.wantedConn === epoch) connTitle.textContent = `Could not load connectivity: ${error.message}`;
      return;
    }
    if (inspector.wantedConn !== epoch) return;
    connState = "ok";
    connCard.hidden = false;
    const [hgt, wid] = body.image_shape;
    connTitle.textContent = `${body.layer} · epoch ${body.epoch} · ${hgt} × ${wid} inputs · each could keep ${body.max} connections`;
    draw(charts.conn, [{
      // Scaled to the busiest pixel, not to the possible maximum: at 98 % sparsity the picture would be all black.
      type: "heatmap", z: body.counts, zmin: 0, zmax: Math.max(1, ...body.counts.map((row) => Math.max(...row))), colorscale: "Hot",
      colorbar: { title: { text: "kept" }, thickness: 12 }, hovertemplate: "pixel (%{y}, %{x})<br>%{z} connections<extra></extra>",
    }], baseLayout({ xaxis: { showgrid: false, constrain: "domain" }, yaxis: { showgrid: false, autorange: "reversed", scaleanchor: "x" },
      margin: { l: 30, r: 10, t: 10, b: 30 }, meta: { epoch: body.epoch } }), `${uirev}-conn`);
  }

  async function renderAges(record) {
    const layer = inspector.layer;
    const epoch = masksState === "ok" && record ? maskEpochFor(layer, record.epoch) : null;
    if (epoch === null) { agesBox.hidden = true; return; }
    const key = `${layer}@${epoch}`;
    inspector.wantedAges = key;
    let body;
    try {
      body = await cached(agesCache, key, `${base}/masks/${encodeURIComponent(layer)}/stability?epoch=${epoch}`);
    } catch (error) {
      if (isAbort(error)) return;
      if (inspector.wantedAges === key) { agesBox.hidden = true; }
      return;
    }
    if (inspector.wantedAges !== key) return;
    agesBox.hidden = false;
    const labels = body.edges.slice(0, -1).map((lo, i) => {
      const hi = body.edges[i + 1] - 1;
      return hi <= lo ? String(lo) : `${lo}–${hi}`;
    });
    agesTitle.textContent = `${body.layer} · epoch ${body.epoch} · ${num(body.never_changed)} of ${num(body.total)} weights never flipped`;
    const muted = getComputedStyle(document.documentElement).getPropertyValue("--muted").trim();
    draw(charts.ages, [
      { type: "bar", x: labels, y: body.kept, name: "kept", marker: { color: PALETTE[4] }, hovertemplate: "%{y:,} kept for %{x} epochs<extra></extra>" },
      { type: "bar", x: labels, y: body.pruned, name: "pruned", marker: { color: muted }, hovertemplate: "%{y:,} pruned for %{x} epochs<extra></extra>" },
    ], baseLayout({ barmode: "group", xaxis: { title: { text: "epochs unchanged" }, type: "category" },
      yaxis: { title: { text: "weights" } }, meta: { layer: body.layer, epoch: body.epoch } }), `${uirev}-ages`);
  }

  /** One request per key, shared by concurrent renders; failures are not kept, so a later render retries. */
  function cached(cache, key, url) {
    if (!cache.has(key)) {
      if (cache.size > 400) cache.delete(cache.keys().next().value);
      const promise = api(url, { signal: signal });
      cache.set(key, promise);
      promise.catch(() => cache.delete(key));
    }
    return cache.get(key);
  }

  function startPlaying() {
    if (sorted.length < 2) return;
    if (inspector.index >= sorted.length - 1) inspector.index = 0;
    playButton.textContent = "❚❚ Pause";
    playButton.setAttribute("aria-label", "Pause");
    inspector.following = false;
    inspector.playing = setInterval(() => {
      inspector.index = Math.min(sorted.length - 1, inspector.index + 1);
      slider.value = String(inspector.index);
      renderInspector();
      if (inspector.index >= sorted.length - 1) { inspector.following = true; stopPlaying(); }
    }, PLAY_MS);
    slider.value = String(inspector.index);
    renderInspector();
  }
  function stopPlaying() {
    clearInterval(inspector.playing);
    inspector.playing = null;
    playButton.textContent = "▶ Play";
    playButton.setAttribute("aria-label", "Play epochs");
  }
  onCleanup(stopPlaying);

  return { el, update, rerender: renderInspector, purge: () => Object.values(charts).forEach(purge) };
}
