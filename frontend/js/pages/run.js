// One run, live: header (status, progress, cancel, edit), its configuration, metric charts and mask inspector fed
// by SSE or polling.

import { api, ApiError, isAbort } from "../api.js";
import { plotlyReady, slug } from "../charts.js";
import { ACTIVE, confirmDialog, dateTime, FINISHED, h, loadFailure, num, parseTime, pct, progressBar, statusBadge } from "../dom.js";
import { metricCharts } from "./run-charts.js";
import { deleteControl, runEditor } from "./run-edit.js";
import { maskInspector } from "./run-inspector.js";
import { stepChart } from "./run-steps.js";
import { configPanel, headlineFigures, noWorkerNote, statusNotice, waitingFor } from "./run-config.js";
import { renderMarkdown } from "../markdown.js";

const POLL_MS = 2000;
const MAX_ID = 2 ** 31 - 1; // ids are whole numbers 1..MAX_ID (the API's range)

/** A run or sweep id as the address spells it: the number when it can exist, else null (never rounded). */
export function parseId(text) {
  const digits = String(text ?? "").trim();
  if (!/^\d{1,10}$/.test(digits)) return null;
  const id = Number(digits);
  return id >= 1 && id <= MAX_ID ? id : null;
}

export async function runPage(root, ctx) {
  const runId = parseId(ctx.params[0]);
  // An id that cannot exist is not asked about: the page says there is no such run, as the address names it.
  if (runId === null) { loadFailure(root, "run", ctx.params[0], null, true); return; }
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
    loadFailure(root, "run", ctx.params[0], error, error instanceof ApiError && error.status === 404);
    return;
  }
  ctx.setTitle(run.name);

  // ---- state ----------------------------------------------------------------------------------------
  const epochs = new Map(); // epoch number -> record
  let sorted = [];
  const uirev = `run-${runId}`;

  // ---- header -----------------------------------------------------------------------------------------
  const title = h("h1");
  const badge = h("span");
  const tracked = run.kind === "tracked";
  // A tracked run was logged by the user's own script (the tracking SDK): no queue, no clone into the form.
  const kindMarker = tracked ? h("span", { class: "kind-marker", id: "run-kind", text: "tracked",
    title: "Logged by the user's own script through the tracking SDK; a cancel reaches it on its next run.log" }) : null;
  const facts = h("dl", { class: "facts" });
  const bar = progressBar();
  const errorBox = h("div");
  const queueNote = h("div", { class: "notice", id: "queue-note", role: "status", hidden: true });
  const cancelButton = h("button", { type: "button", class: "danger", id: "cancel-run", onclick: cancel }, "Cancel run");
  const actionNote = h("span", { class: "muted", role: "status" });
  // The worker uploads the pruned model when the run completes; before that the link would download a 404.
  const modelLink = h("a", { class: "button", href: `${base}/model`, download: `run-${runId}-model.pt`, id: "download-model" }, "Download model");
  const notesBox = h("div", { class: "run-notes markdown", id: "run-notes" });
  const editor = runEditor({ base, signal: ctx.signal, getRun: () => run, onSaved: (fresh) => {
    run = { ...run, name: fresh.name, tags: fresh.tags, notes: fresh.notes };
    ctx.setTitle(run.name);
    renderHeader();
  } });
  const deleter = deleteControl({ base, signal: ctx.signal, onDeleted: () => ctx.navigate("/"),
    onError: (error) => { actionNote.textContent = `Not deleted: ${error.message}`; } });
  ctx.onCleanup(deleter.stop);
  const header = h("section", { class: "run-header card", "aria-label": "Run status" },
    h("div", { class: "run-title" }, title, badge, kindMarker),
    facts, errorBox, queueNote, notesBox, bar.el,
    h("div", { class: "actions" },
      cancelButton,
      editor.button,
      tracked ? null : h("a", { class: "button", href: `/runs/new?clone=${runId}` }, "Clone this run"),
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
    // The header's figures are those of the last recorded epoch, as the charts show: a cancelled run's final
    // summary is measured after the interrupted epoch and would disagree with them.
    const figures = headlineFigures(run, sorted);
    facts.replaceChildren(...[
      fact("run", `#${run.id}`),
      fact("strategy", run.strategy),
      fact("model", run.model),
      fact("dataset", run.dataset),
      fact("device", run.device),
      fact(tracked ? "host" : "worker", run.worker || "—"),
      fact("attempts", String(run.attempts)),
      fact("created", dateTime(run.created_at)),
      run.started_at ? fact("started", dateTime(run.started_at)) : null,
      run.finished_at ? fact("finished", dateTime(run.finished_at)) : null,
      fact("sparsity", pct(figures.sparsity)),
      fact("test acc.", pct(figures.test_acc, 2)),
      fact("best acc.", pct(figures.best_test_acc, 2)),
      run.preset ? fact("preset", run.preset) : null,
      (run.tags || []).length ? fact("tags", run.tags.join(", ")) : null,
      ...Object.entries(summary).filter(([k, v]) => !["final_sparsity", "final_test_acc", "best_test_acc"].includes(k)
        && (typeof v === "number" || typeof v === "string")).slice(0, 6).map(([k, v]) => fact(k.replace(/_/g, " "), typeof v === "number" ? num(v) : v)),
    ].filter(Boolean));
    bar.update({ ...run, eta_seconds: etaSeconds() });
    // Rebuilt only when it changes: a rebuild would close a traceback the user has opened.
    const noticeKey = JSON.stringify([run.status, run.error, sorted.length ? sorted[sorted.length - 1].epoch : 0, run.epochs_total]);
    if (errorBox.dataset.key !== noticeKey) {
      errorBox.dataset.key = noticeKey;
      errorBox.replaceChildren(...statusNotice(run, sorted));
    }
    checkQueue();
    modelLink.hidden = tracked || run.status !== "completed";
    if (notesBox.dataset.source !== (run.notes || "")) {
      notesBox.dataset.source = run.notes || "";
      notesBox.replaceChildren(renderMarkdown(run.notes || ""));
    }
    notesBox.hidden = !run.notes;
    deleter.setVisible(FINISHED.has(run.status));
    const active = ACTIVE.has(run.status);
    cancelButton.hidden = !active;
    cancelButton.disabled = Boolean(run.cancel_requested);
    cancelButton.textContent = run.cancel_requested ? "Cancel requested…" : "Cancel run";
  }

  // A queued run whose queue no online worker takes waits forever: say so, and how to start one.
  let queueCheckedAt = 0;
  async function checkQueue() {
    if (run.status !== "queued" || !run.queue) { queueNote.hidden = true; return; }
    if (Date.now() - queueCheckedAt < 10_000) return;
    queueCheckedAt = Date.now();
    try {
      const workers = (await api("/api/workers", { signal: ctx.signal })).items;
      queueNote.textContent = noWorkerNote(run, workers) || "";
      queueNote.hidden = !queueNote.textContent || run.status !== "queued";
    } catch (error) {
      if (!isAbort(error)) queueNote.hidden = true;
    }
  }

  async function cancel() {
    const stop = await confirmDialog(`Cancel run ${run.id} (${run.name})? It stops within seconds and cannot be resumed.`,
      { confirm: "Yes, cancel it", cancel: "Keep running" });
    if (!stop) return;
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

  // ---- charts ---------------------------------------------------------------------------------------
  const metrics = metricCharts(uirev);
  const exportName = () => `run-${runId}-${slug(run.name)}`;
  const inspector = maskInspector({ base, signal: ctx.signal, uirev, onCleanup: ctx.onCleanup, exportName,
    waiting: () => waitingFor(run), finished: () => FINISHED.has(run.status) });
  const emptyNote = h("p", { class: "muted", id: "no-epochs" });
  const steps = tracked ? stepChart({ runId, signal: ctx.signal, uirev, exportName }) : null;

  const chartsSection = h("div", { class: "charts" }, metrics.el, steps?.el, inspector.el);
  root.append(header, configPanel(run.config, { tracked }), emptyNote, chartsSection);
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

  function renderAll() {
    sorted = [...epochs.values()].sort((a, b) => a.epoch - b.epoch);
    renderHeader();
    emptyNote.hidden = sorted.length > 0;
    emptyNote.textContent = `${waitingFor(run)}.`;
    inspector.update(sorted, metrics.draw(sorted, run.epochs_total, { waiting: waitingFor(run), exportName: exportName() }));
  }

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
    if (typeof s.cancel_requested === "boolean") run.cancel_requested = s.cancel_requested;
    if (s.status === "running" && !run.started_at) run.started_at = new Date().toISOString();
    scheduleRender();
  }

  async function reloadRun() {
    try {
      run = await api(base, { signal: ctx.signal });
      // The answer may predate epochs the stream has already shown: the header never goes back to them.
      for (const record of epochs.values()) upsertEpoch(record);
      scheduleRender();
    } catch (error) {
      if (!isAbort(error)) actionNote.textContent = `Could not refresh the run: ${error.message}`;
    }
  }

  function openStream() {
    source = new EventSource(`${base}/events`);
    source.addEventListener("epoch", (event) => upsertEpoch(JSON.parse(event.data)));
    if (steps) source.addEventListener("points", (event) => steps.add(JSON.parse(event.data).points));
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
      if (steps) await steps.poll();
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
    metrics.purge();
    inspector.purge();
    steps?.purge();
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
  if (steps) await steps.load();
  if (!FINISHED.has(run.status) && !ctx.signal.aborted) openStream();
}
