// One run, live: header (status, progress, cancel), metric charts fed by SSE, and the mask inspector.

import { api, ApiError, isAbort } from "../api.js";
import { baseLayout, draw, PALETTE, plotlyReady, purge } from "../charts.js";
import { ACTIVE, dateTime, h, num, parseTime, pct, plotlyText, progressBar, statusBadge } from "../dom.js";
import { deleteControl, runEditor } from "./run-edit.js";

const FINISHED = new Set(["completed", "failed", "cancelled"]);
const POLL_MS = 2000;
const PLAY_MS = 600;
const MASK_CELLS = 4096;

export async function runPage(root, ctx) {
  const runId = Number(ctx.params[0]);
  const base = `/api/runs/${runId}`;
  let run;
  // The run, its epochs and the chart library load at once; the page skeleton goes up before the charts.
  const chartsLoaded = plotlyReady();
  chartsLoaded.catch(() => {});
  const epochsRequest = api(`${base}/epochs`, { signal: ctx.signal });
  epochsRequest.catch(() => {});
  try {
    run = await api(base, { signal: ctx.signal });
  } catch (error) {
    if (isAbort(error)) return;
    root.append(h("h1", { text: `Run ${runId}` }), h("div", { class: "notice error", role: "alert",
      text: error instanceof ApiError && error.status === 404 ? `There is no run ${runId}.` : `Could not load run ${runId}: ${error.message}` }));
    return;
  }
  ctx.setTitle(run.name);

  // ---- state ----------------------------------------------------------------------------------------
  const epochs = new Map(); // epoch number -> record
  let sorted = [];
  const uirev = `run-${runId}`;
  const inspector = { index: -1, following: true, layer: null, playing: null };
  let maskLayers = null; // [{name, shape, epochs}] once /masks answered; [] when none yet
  let masksState = "loading"; // loading | ok | missing | error
  let connState = "unknown"; // unknown | ok | missing
  const gridCache = new Map();
  const connCache = new Map();
  const agesCache = new Map();

  // ---- header -----------------------------------------------------------------------------------------
  const title = h("h1");
  const badge = h("span");
  const facts = h("dl", { class: "facts" });
  const bar = progressBar();
  const errorBox = h("div");
  const cancelButton = h("button", { type: "button", class: "danger", id: "cancel-run", onclick: cancel }, "Cancel run");
  const actionNote = h("span", { class: "muted", role: "status" });
  // The worker uploads the pruned model when the run completes; before that the link would download a 404.
  const modelLink = h("a", { class: "button", href: `${base}/model`, download: `run-${runId}-model.pt`, id: "download-model" }, "Download model");
  const notesBox = h("p", { class: "run-notes", id: "run-notes" });
  const editor = runEditor({ base, signal: ctx.signal, getRun: () => run, onSaved: (fresh) => {
    run = { ...run, name: fresh.name, tags: fresh.tags, notes: fresh.notes };
    ctx.setTitle(run.name);
    renderHeader();
  } });
  const deleter = deleteControl({ base, signal: ctx.signal, onDeleted: () => ctx.navigate("/"),
    onError: (error) => { actionNote.textContent = `Not deleted: ${error.message}`; } });
  ctx.onCleanup(deleter.stop);
  const header = h("section", { class: "run-header card", "aria-label": "Run status" },
    h("div", { class: "run-title" }, title, badge),
    facts, notesBox, bar.el, errorBox,
    h("div", { class: "actions" },
      cancelButton,
      editor.button,
      h("a", { class: "button", href: `/runs/new?clone=${runId}` }, "Clone this run"),
      h("a", { class: "button", href: `${base}/export?format=csv`, download: `run-${runId}.csv` }, "Export CSV"),
      h("a", { class: "button", href: `${base}/export?format=json`, download: `run-${runId}.json` }, "Export JSON"),
      modelLink,
      deleter.el,
      actionNote),
    editor.panel);

  function fact(label, value) {
    return h("div", {}, h("dt", { text: label }), h("dd", { text: value }));
  }

  function etaSeconds() {
    const started = parseTime(run.started_at);
    if (run.status !== "running" || !started || !run.epochs_done) return null;
    const elapsed = (Date.now() - started.getTime()) / 1000;
    return Math.max(0, (elapsed / run.epochs_done) * (run.epochs_total - run.epochs_done));
  }

  function renderHeader() {
    title.textContent = run.name;
    badge.replaceChildren(statusBadge(run.status));
    const summary = run.summary || {};
    facts.replaceChildren(...[
      fact("run", `#${run.id}`),
      fact("strategy", run.strategy),
      fact("model", run.model),
      fact("dataset", run.dataset),
      fact("device", run.device),
      fact("worker", run.worker || "—"),
      fact("attempts", String(run.attempts)),
      fact("created", dateTime(run.created_at)),
      run.started_at ? fact("started", dateTime(run.started_at)) : null,
      run.finished_at ? fact("finished", dateTime(run.finished_at)) : null,
      fact("sparsity", pct(run.sparsity)),
      fact("test acc.", pct(run.test_acc, 2)),
      fact("best acc.", pct(run.best_test_acc, 2)),
      run.preset ? fact("preset", run.preset) : null,
      (run.tags || []).length ? fact("tags", run.tags.join(", ")) : null,
      ...Object.entries(summary).filter(([k, v]) => !["final_sparsity", "final_test_acc", "best_test_acc"].includes(k)
        && (typeof v === "number" || typeof v === "string")).slice(0, 6).map(([k, v]) => fact(k.replace(/_/g, " "), typeof v === "number" ? num(v) : v)),
    ].filter(Boolean));
    bar.update({ ...run, eta_seconds: etaSeconds() });
    errorBox.replaceChildren(run.error ? h("pre", { class: "notice error", style: "white-space:pre-wrap;margin:0", text: run.error }) : "");
    modelLink.hidden = run.status !== "completed";
    notesBox.textContent = run.notes || "";
    notesBox.hidden = !run.notes;
    deleter.setVisible(FINISHED.has(run.status));
    const active = ACTIVE.has(run.status);
    cancelButton.hidden = !active;
    cancelButton.disabled = Boolean(run.cancel_requested);
    cancelButton.textContent = run.cancel_requested ? "Cancel requested…" : "Cancel run";
  }

  async function cancel() {
    cancelButton.disabled = true;
    actionNote.textContent = "";
    try {
      run = await api(`${base}/cancel`, { method: "POST", signal: ctx.signal });
      renderHeader();
    } catch (error) {
      if (isAbort(error)) return;
      actionNote.textContent = `Cancel failed: ${error.message}`;
      cancelButton.disabled = false;
    }
  }

  // ---- chart cards ----------------------------------------------------------------------------------
  const chart = (id, label, extra = "") => h("div", { class: `chart ${extra}`, id, role: "figure", "aria-label": label });
  const card = (heading, ...body) => h("section", { class: "card" }, h("h2", { text: heading }), ...body);
  const charts = {
    loss: chart("chart-loss", "Loss and accuracy per epoch"),
    sparsity: chart("chart-sparsity", "Overall sparsity and the schedule's target per epoch"),
    heat: chart("chart-layer-heatmap", "Per-layer sparsity, layers by epochs", "tall"),
    lines: chart("chart-layer-lines", "Per-layer sparsity per epoch", "tall"),
    churn: chart("chart-churn", "Weights pruned and regrown per epoch and layer", "tall"),
    mask: chart("chart-mask", "Mask density grid of the selected layer at the selected epoch", "tall"),
    ages: chart("chart-ages", "How many epochs the selected layer's weights have stayed kept or pruned"),
    conn: chart("chart-connectivity", "Connections kept per input pixel at the selected epoch", "tall"),
  };
  const emptyNote = h("p", { class: "muted", id: "no-epochs" }, "No epoch recorded yet — charts fill in live as the worker reports.");

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

  const chartsSection = h("div", { class: "charts" },
    card("Loss and accuracy", charts.loss),
    card("Sparsity", charts.sparsity),
    card("Per-layer sparsity", charts.heat),
    card("Per-layer sparsity over epochs", charts.lines),
    h("section", { class: "card wide" }, h("h2", { text: "Mask churn" }),
      h("p", { class: "muted", style: "margin:0 0 4px", text: "Weights pruned (up) and regrown (down) at each epoch, per layer." }), charts.churn),
    h("section", { class: "card wide", id: "inspector", "aria-label": "Mask inspector" },
      h("h2", { text: "Masks" }),
      h("div", { class: "inspector" },
        h("label", { for: "mask-layer", text: "Layer" }), layerSelect,
        playButton, slider, epochLabel),
      h("div", { class: "inspector-grid" },
        h("div", {}, h("h2", { text: "Mask density" }), maskTitle, maskNote, charts.mask),
        connCard),
      agesBox,
      h("div", { class: "table-wrap", style: "margin-top:12px" }, layerTable)),
  );
  root.append(header, emptyNote, chartsSection);
  renderHeader();

  // ---- epochs in, charts out --------------------------------------------------------------------------
  let frame = null;
  function upsertEpoch(record) {
    epochs.set(record.epoch, record);
    if (record.epoch > (run.epochs_done || 0)) {
      run.epochs_done = record.epoch;
      if (record.sparsity !== null && record.sparsity !== undefined) run.sparsity = record.sparsity;
      if (record.test_acc !== null && record.test_acc !== undefined) run.test_acc = record.test_acc;
    }
    if (record.test_acc !== null && record.test_acc !== undefined && (run.best_test_acc === null || record.test_acc > run.best_test_acc)) {
      run.best_test_acc = record.test_acc;
    }
    scheduleRender();
  }

  function scheduleRender() {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = null;
      renderAll();
    });
  }
  ctx.onCleanup(() => frame && cancelAnimationFrame(frame));

  function layerNames() {
    const names = [];
    const seen = new Set();
    for (const record of sorted) for (const layer of record.layers || []) if (!seen.has(layer.name)) { seen.add(layer.name); names.push(layer.name); }
    return names;
  }

  function renderAll() {
    sorted = [...epochs.values()].sort((a, b) => a.epoch - b.epoch);
    renderHeader();
    emptyNote.hidden = sorted.length > 0;
    const x = sorted.map((e) => e.epoch);
    const col = (key) => sorted.map((e) => (e[key] === undefined ? null : e[key]));
    // The x axis spans the whole planned run, so a live run fills in from the left. autorange (not a fixed
    // range) keeps the user's zoom under uirevision.
    const total = Math.max(run.epochs_total || 1, sorted.length ? sorted[sorted.length - 1].epoch : 1);
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

    const names = layerNames();
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
  ctx.onCleanup(() => clearTimeout(maskListTimer));

  async function loadMaskLayers() {
    maskListTimer = null;
    lastMaskListFetch = Date.now();
    try {
      const body = await api(`${base}/masks`, { signal: ctx.signal });
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
      const promise = api(url, { signal: ctx.signal });
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
  ctx.onCleanup(stopPlaying);

  // ---- live updates: SSE, with polling when the stream fails --------------------------------------------
  let source = null;
  let pollTimer = null;

  let reloadTimer = null;
  function applyStatus(s) {
    // Status events carry no attempts or timestamps: a transition re-reads the run (once per burst of events).
    if (s.status !== run.status && !FINISHED.has(s.status)) {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(reloadRun, 300);
    }
    run.status = s.status;
    if (typeof s.epochs_done === "number") run.epochs_done = Math.max(run.epochs_done || 0, s.epochs_done);
    if (typeof s.epochs_total === "number") run.epochs_total = s.epochs_total;
    if ("worker" in s) run.worker = s.worker;
    if ("error" in s) run.error = s.error;
    if (s.reason === "cancel requested") run.cancel_requested = true;
    if (s.status === "running" && !run.started_at) run.started_at = new Date().toISOString();
    scheduleRender();
  }

  async function reloadRun() {
    try {
      run = await api(base, { signal: ctx.signal });
      scheduleRender();
    } catch (error) {
      if (!isAbort(error)) actionNote.textContent = `Could not refresh the run: ${error.message}`;
    }
  }

  function openStream() {
    source = new EventSource(`${base}/events`);
    source.addEventListener("epoch", (event) => upsertEpoch(JSON.parse(event.data)));
    source.addEventListener("status", (event) => {
      const status = JSON.parse(event.data);
      applyStatus(status);
      if (FINISHED.has(status.status)) {
        // The server ends the stream now; closing first stops EventSource from reconnecting.
        source.close();
        source = null;
        reloadRun();
      }
    });
    source.addEventListener("error", () => {
      if (!source) return;
      source.close();
      source = null;
      if (!FINISHED.has(run.status)) startPolling();
    });
  }

  async function poll() {
    try {
      const [fresh, list] = await Promise.all([api(base, { signal: ctx.signal }), api(`${base}/epochs`, { signal: ctx.signal })]);
      run = fresh;
      for (const record of list.items) upsertEpoch(record);
      scheduleRender();
      if (FINISHED.has(run.status)) return;
    } catch (error) {
      if (isAbort(error)) return;
    }
    pollTimer = setTimeout(poll, POLL_MS);
  }
  function startPolling() {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, POLL_MS);
  }

  ctx.onCleanup(() => {
    clearTimeout(reloadTimer);
    source?.close();
    clearTimeout(pollTimer);
    Object.values(charts).forEach(purge);
  });

  const onTheme = () => renderAll();
  window.addEventListener("themechange", onTheme);
  ctx.onCleanup(() => window.removeEventListener("themechange", onTheme));
  ctx.every(5000, () => { if (run.status === "running") bar.update({ ...run, eta_seconds: etaSeconds() }); });

  await chartsLoaded;
  if (ctx.signal.aborted) return;
  try {
    const list = await epochsRequest;
    for (const record of list.items) epochs.set(record.epoch, record);
  } catch (error) {
    if (isAbort(error)) return;
    actionNote.textContent = `Could not load epochs: ${error.message}`;
  }
  renderAll();
  if (!FINISHED.has(run.status)) openStream();
}
