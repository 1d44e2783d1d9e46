// New-run form: built from GET /api/options and GET /api/presets. What it submits is the config it was filled
// from (preset, cloned run or defaults) with the visible fields laid over it, so an unedited preset runs as is.
// In sweep mode, numeric and choice fields take several values and the form posts a grid to /api/sweeps.

import { api, ApiError, isAbort, loadCatalog } from "../api.js";
import { h } from "../dom.js";
import {
  buildField, fieldSections, readField, setListMode, sweepable, unreadableFields, unreadableMessage,
  writeField,
} from "./newrun-fields.js";
import { getPath, rescaleEpoch, schemaAt, setPath, stepsPerEpoch } from "./newrun-schema.js";

// Why a drop on SET/RigL's last step moves nothing, said where the form warns about the phase.
const COSINE_END = "; the cosine decay drops nothing at its last step";

const SECTION_OF = { name: "run", tags: "run", device: "run", preset: "run", model: "model", dataset: "model",
  training: "training", pruning: "pruning" };
const EPOCH_FIELDS = [
  ["pruning.schedule.start_epoch", "schedule start"],
  ["pruning.schedule.end_epoch", "schedule end"],
  ["pruning.recovery.end_epoch", "recovery stop"],
];

export async function newRunPage(root, ctx) {
  root.append(h("h1", { text: "New run" }));
  const loading = h("p", { class: "muted", text: "Loading the form…" });
  root.append(loading);

  const cloneId = ctx.query.get("clone");
  const [options, presetResult, cloneResult] = await Promise.all([
    loadCatalog(),
    api("/api/presets", { signal: ctx.signal }).then((r) => ({ items: r.items || [] }), (error) => ({ error })),
    cloneId ? api(`/api/runs/${encodeURIComponent(cloneId)}`, { signal: ctx.signal }).then((run) => ({ run }), (error) => ({ error }))
      : Promise.resolve(null),
  ]);
  if (ctx.signal.aborted) return;
  loading.remove();
  if (presetResult.error && isAbort(presetResult.error)) return;

  const schema = options.schema;
  const defaults = options.defaults;
  const prunDefaults = Object.fromEntries(Object.entries(schemaAt(schema, "pruning").properties || {})
    .filter(([, s]) => "default" in s).map(([key, s]) => [key, structuredClone(s.default)]));
  const presets = presetResult.items || [];

  // ---- state and the questions fields ask about it ----------------------------------------------------
  const fields = new Map(); // path -> field (see newrun-fields.js)
  let listMode = false;
  let overrides = null; // while testing visibility in sweep mode: one combination of the chosen choices
  let base = structuredClone(defaults); // the config being edited: what unedited fields keep
  let presetName = null;
  let epochsFrom = null; // the epoch fields as they were before Epochs was edited, to rescale from
  let startBeforeConstant = null; // the schedule start epoch a switch to `constant` replaced by 0 (see below)
  // Training-set sizes of the built-in datasets (GET /api/options), for steps per epoch.
  const trainSamples = options.train_samples ?? {};

  const single = (path) => {
    if (overrides && path in overrides) return overrides[path];
    const field = fields.get(path);
    return field ? readField(field) : undefined;
  };
  const form = {
    value: single,
    mode: () => fields.get("pruning.mode")?.control.value || "target",
    pruningOn: () => pruningToggle.checked,
    epochs: () => (Number.isInteger(single("training.epochs")) ? single("training.epochs") : null),
    stepsPerEpoch: () => stepsPerEpoch(single("dataset.name"), single("dataset.limit"), single("training.batch_size"),
      trainSamples),
  };
  const sections = fieldSections(options, schema, form);

  // ---- layout -----------------------------------------------------------------------------------------
  const presetSelect = h("select", { id: "f-preset", name: "preset", "aria-describedby": "f-preset-help" },
    h("option", { value: "", text: presets.length ? "— choose a preset —" : "— none —" }),
    presets.map((p) => h("option", { value: p.name, text: p.name })));
  const presetHelp = h("span", { class: "muted", id: "f-preset-help" });
  const presetNote = presetResult.error
    ? h("div", { class: "notice", text: `Presets are unavailable (${presetResult.error.message}); fill in the fields yourself.` }) : null;
  const sweepToggle = h("input", { type: "checkbox", id: "f-sweep" });
  const sweepHelp = h("p", { class: "help", id: "f-sweep-help", hidden: true,
    text: "Numbers take comma-separated values (e.g. 0.9, 0.95, 0.98); choices take several selections (Ctrl/⌘-click). "
      + "One run per combination." });
  const pruningToggle = h("input", { type: "checkbox", id: "f-pruning-enabled" });

  const summary = h("div", { id: "form-errors", role: "alert" });
  const sectionErrors = new Map();
  const fieldsets = sections.map((section) => {
    const sectionError = h("p", { class: "section-error", id: `section-${section.id}-error` });
    sectionErrors.set(section.id, sectionError);
    const grid = h("div", { class: "fields" }, section.fields.map((spec) => {
      const field = buildField(spec, schema);
      fields.set(spec.path, field);
      return field.row;
    }));
    const fs = h("fieldset", { id: `section-${section.id}`, "aria-describedby": `section-${section.id}-error` },
      h("legend", { text: section.title }));
    if (section.id === "pruning") {
      fs.append(h("div", { class: "field check pruning-switch" }, pruningToggle,
        h("label", { for: "f-pruning-enabled", text: "Prune this network (off: a dense baseline)" })));
    }
    fs.append(sectionError, grid);
    return fs;
  });

  const submit = h("button", { type: "submit", class: "primary", text: "Start run" });
  const preview = h("pre", { id: "config-preview", class: "config-preview" });
  const previewTitle = h("summary", { text: "Config JSON that will be submitted" });
  const formEl = h("form", { class: "run-form", novalidate: true, "aria-label": "New run" },
    h("fieldset", { id: "section-preset" }, h("legend", { text: "Start from" }),
      h("div", { class: "preset-row" }, h("label", { for: "f-preset", text: "Preset" }), presetSelect, presetHelp),
      presetNote,
      h("div", { class: "field check sweep-switch" }, sweepToggle,
        h("label", { for: "f-sweep", text: "Sweep: try several values of some fields" })),
      sweepHelp),
    summary, fieldsets,
    h("details", {}, previewTitle, preview),
    h("div", { class: "form-actions" }, submit, h("a", { href: "/", text: "Cancel" })));
  if (cloneResult?.run) {
    root.append(h("p", { class: "muted" }, "Cloned from ", h("a", { href: `/runs/${cloneResult.run.id}`, text: `run ${cloneResult.run.id} (${cloneResult.run.name})` }), "."));
  } else if (cloneResult?.error) {
    root.append(h("div", { class: "notice error", text: `Could not load the run to clone: ${cloneResult.error.message}` }));
  }
  // ?preset=NAME that no preset has (with the presets loaded): said, and the form keeps the API's defaults.
  const askedPreset = ctx.query.get("preset");
  if (askedPreset && !cloneResult?.run && !presetResult.error && !presets.some((p) => p.name === askedPreset)) {
    root.append(h("div", { class: "notice error", id: "preset-unknown", role: "alert",
      text: `There is no preset “${askedPreset}”; the form starts from the defaults.` }));
  }
  root.append(formEl);

  // ---- visibility (in sweep mode: a field shows when it applies to any chosen combination) -----------
  function choiceCombinations() {
    if (!listMode) return [null];
    let combos = [{}];
    for (const [path, field] of fields) {
      if (field.spec.kind !== "select" || field.spec.virtual) continue;
      const chosen = readField(field, true);
      if (chosen.length < 2) continue;
      combos = combos.flatMap((c) => chosen.map((v) => ({ ...c, [path]: v }))).slice(0, 64);
    }
    return combos;
  }

  function visibleIn(spec, combos) {
    if (spec.path.startsWith("pruning.") && !form.pruningOn()) return false;
    if (!spec.when) return true;
    return combos.some((combo) => {
      overrides = combo;
      try { return spec.when(); } finally { overrides = null; }
    });
  }

  let combos = [null];
  const visible = (spec) => visibleIn(spec, combos);

  // ---- filling and collecting ---------------------------------------------------------------------------
  function fill(config) {
    base = structuredClone(config);
    const pruning = config.pruning ?? null;
    const shown = { ...config, pruning: pruning ?? prunDefaults };
    for (const field of fields.values()) {
      const { spec } = field;
      if (spec.virtual) continue;
      let v = getPath(shown, spec.path);
      if (v === undefined) v = getPath({ ...defaults, pruning: prunDefaults }, spec.path);
      if (spec.path === "pruning.threshold") v = typeof pruning?.threshold === "number" ? pruning.threshold : "";
      if (spec.path === "pruning.threshold.std_scale") v = pruning?.threshold?.std_scale ?? "";
      if (spec.path === "pruning.target_sparsity" && pruning === null) v = 0.9; // a dense run switched to pruning
      writeField(field, v);
    }
    pruningToggle.checked = pruning !== null;
    const threshold = pruning?.threshold;
    fields.get("pruning.mode").control.value = threshold && typeof threshold === "object" ? "std"
      : typeof threshold === "number" ? "threshold" : "target";
    presetName = config.preset ?? null;
    fields.get("training.epochs").note.textContent = "";
    // A note about an edit the new values replace (e.g. "Set to 0 for a constant schedule") would describe them.
    fields.get("pruning.schedule.start_epoch").note.textContent = "";
    startBeforeConstant = null;
    snapshotEpochs();
    refresh();
  }

  /** The config (single mode) or { base, grid } (sweep mode) the form would submit now. */
  function collect() {
    const out = structuredClone(base);
    const grid = {};
    if (form.pruningOn() && (out.pruning === null || out.pruning === undefined)) out.pruning = {};
    for (const field of fields.values()) {
      const { spec } = field;
      if (spec.virtual || spec.path.startsWith("pruning.threshold")) continue;
      if (spec.path.startsWith("pruning.") && !form.pruningOn()) continue;
      if (!visible(spec)) {
        if ("whenHidden" in spec) setPath(out, spec.path, spec.whenHidden);
        continue;
      }
      let v = readField(field, listMode && sweepable(spec));
      if (listMode && sweepable(spec)) {
        if (v.length > 1) grid[spec.path] = v;
        v = v[0];
      }
      setPath(out, spec.path, v);
    }
    if (!form.pruningOn()) out.pruning = null;
    else {
      const mode = form.mode();
      // N:M sets the sparsity itself. A sweep over granularities carries what every combination needs: the target
      // (or threshold) when any chosen granularity is not n:m, N:M (a visible field, above) when any is; the API
      // leaves out of each combination what does not apply to it.
      const granularity = fields.get("pruning.granularity");
      const granularities = listMode ? readField(granularity, true) : [readField(granularity)];
      if (granularities.every((g) => g === "n:m")) {
        out.pruning.threshold = null;
        out.pruning.target_sparsity = null;
      } else if (mode === "target") out.pruning.threshold = null;
      else {
        out.pruning.target_sparsity = null;
        const path = mode === "std" ? "pruning.threshold.std_scale" : "pruning.threshold";
        let v = readField(fields.get(path), listMode);
        if (listMode) {
          if (v.length > 1) grid[path] = v;
          v = v[0];
        }
        out.pruning.threshold = mode === "std" ? { std_scale: v } : v;
      }
    }
    out.preset = presetName;
    return listMode ? { name: out.name, base: out, grid } : out;
  }

  // ---- live behaviour: visibility, help, epoch rescaling, step advice ----------------------------------
  function snapshotEpochs() {
    epochsFrom = { epochs: single("training.epochs"), values: Object.fromEntries(EPOCH_FIELDS.map(([p]) => [p, single(p)])) };
  }

  function rescaleEpochs() {
    const to = single("training.epochs");
    const from = epochsFrom?.epochs;
    const note = fields.get("training.epochs").note;
    if (listMode || !Number.isInteger(to) || to < 1 || !Number.isInteger(from) || to === from) {
      if (Number.isInteger(to) && to === from) note.textContent = "";
      return;
    }
    const moved = [];
    for (const [path, label] of EPOCH_FIELDS) {
      const old = epochsFrom.values[path];
      if (!Number.isInteger(old)) continue;
      const now = rescaleEpoch(old, from, to);
      writeField(fields.get(path), now);
      if (now !== old && visible(fields.get(path).spec)) moved.push(`${label} ${old} → ${now}`);
    }
    note.classList.remove("warn");
    note.textContent = moved.length ? `Rescaled from ${from} to ${to} epochs: ${moved.join(", ")}.` : "";
  }

  function adviseSteps() {
    // In sweep mode every listed value counts: the shortest epoch of any combination against the longest interval.
    const values = (path) => {
      const field = fields.get(path);
      const v = field ? readField(field, listMode) : undefined;
      return Array.isArray(v) ? v : [v];
    };
    let shortest = null;
    for (const dataset of values("dataset.name")) {
      for (const limit of values("dataset.limit")) {
        for (const batch of values("training.batch_size")) {
          const steps = stepsPerEpoch(dataset, limit, batch, trainSamples);
          if (steps && (!shortest || steps < shortest.steps)) shortest = { steps, dataset, batch };
        }
      }
    }
    for (const field of fields.values()) {
      if (!field.spec.stepsAdvice) continue;
      const v = Math.max(...values(field.spec.path).filter(Number.isInteger), -Infinity);
      const tooLong = shortest && v > shortest.steps;
      const phase = shortest && field.spec.path === "pruning.recovery.every_steps" ? dropPhase(shortest.steps) : null;
      const pastPhase = phase && v > phase.room;
      field.note.classList.toggle("warn", Boolean(tooLong || pastPhase));
      field.note.textContent = pastPhase
        ? `Longer than the whole drop-and-grow phase${listMode ? " in some runs" : ""} (${phase.steps} steps: from the `
          + `end of epoch ${phase.start} to the end of epoch ${phase.end}, ${shortest.steps} steps an epoch on `
          + `${shortest.dataset} at batch ${shortest.batch}${phase.cosine ? COSINE_END : ""}): no weight would ever be `
          + `dropped and regrown. Use at most ${phase.room} steps.`
        : tooLong
          ? `Longer than an epoch${listMode ? " in some runs" : ""} (${shortest.steps} steps on ${shortest.dataset} at `
            + `batch ${shortest.batch}): masks change only every ${(v / shortest.steps).toFixed(1)} epochs. `
            + "Empty: at least once an epoch."
          : "";
    }
    // The recovery interval has a default of its own; it is advised against the same epoch length.
    if (listMode) {
      // A sweep over Epochs keeps every other epoch field as typed: a 4-epoch run with end epoch 2 of a
      // 2-epoch one prunes by half-time. Say so where the list is typed.
      const epochsNote = fields.get("training.epochs").note;
      const fixed = EPOCH_FIELDS.filter(([p]) => visible(fields.get(p).spec) && Number.isInteger(single(p)))
        .map(([p, label]) => `${label} ${single(p)}`);
      const listed = values("training.epochs").filter(Number.isInteger);
      const several = new Set(listed).size > 1;
      epochsNote.classList.toggle("warn", several && fixed.length > 0);
      epochsNote.textContent = several && fixed.length
        ? `Every run keeps ${fixed.join(", ")}: epoch fields are not rescaled for each Epochs value; sweep them too, or make one sweep per length.`
        : "";
    }
  }

  /**
   * SET/RigL's drop-and-grow phase at `steps` steps an epoch, as the API counts it: from the schedule's start epoch
   * to the recovery's stop epoch (else the schedule's end epoch, else 3/4 of the epochs); `room`, the longest
   * interval that still drops (its last step moves nothing under the cosine decay). Null when a value it
   * needs is not a single whole number (a list in sweep mode, an empty Epochs).
   */
  function dropPhase(steps) {
    if (!["random", "gradient"].includes(single("pruning.recovery.kind"))) return null;
    const whole = (path) => (Number.isInteger(single(path)) ? single(path) : null);
    const start = whole("pruning.schedule.start_epoch");
    const epochs = whole("training.epochs");
    const end = whole("pruning.recovery.end_epoch") ?? whole("pruning.schedule.end_epoch")
      ?? (start !== null && epochs !== null ? Math.max(start, Math.ceil(0.75 * epochs)) : null);
    if (start === null || end === null || end <= start) return null;
    // Under the cosine decay a drop on the phase's last step moves nothing (its fraction has decayed to 0).
    const cosine = single("pruning.recovery.decay") !== "constant";
    return { steps: (end - start) * steps, room: (end - start) * steps - (cosine ? 1 : 0), cosine, start, end };
  }

  function refresh() {
    combos = choiceCombinations();
    for (const field of fields.values()) {
      field.row.hidden = !visible(field.spec);
      field.updateHelp();
    }
    document.getElementById("section-pruning")?.querySelector(".fields")?.toggleAttribute("hidden", !form.pruningOn());
    adviseSteps();
    const body = collect();
    preview.textContent = JSON.stringify(body, null, 2);
    previewTitle.textContent = listMode ? "Sweep JSON that will be submitted" : "Config JSON that will be submitted";
    submit.textContent = listMode ? `Start sweep (${Object.values(body.grid).reduce((n, v) => n * v.length, 1)} runs)` : "Start run";
  }

  // ---- errors: every located 422 entry marks its field ----------------------------------------------
  function clearErrors() {
    summary.replaceChildren();
    for (const { row, error, control } of fields.values()) {
      row.classList.remove("invalid");
      error.textContent = "";
      for (const c of [control].flat()) c.removeAttribute("aria-invalid");
    }
    for (const el of sectionErrors.values()) el.textContent = "";
  }

  /**
   * A sweep's 422 says each fault once per combination ("combination 2 (model.name=mlp, …): pruning.n_m.0: …");
   * messages that differ only by that prefix are shown once, with how many combinations they concern.
   */
  function mergeCombinations(messages, total) {
    const groups = new Map(); // the message without its prefix → the combinations that gave it
    const order = [];
    for (const message of messages) {
      const match = /^(.*?)combination (\d+) \(.*?\): (.*)$/s.exec(message);
      const key = match ? `${match[1]}${match[3]}` : message;
      if (!groups.has(key)) { groups.set(key, { combos: new Set(), first: message }); order.push(key); }
      if (match) groups.get(key).combos.add(match[2]);
    }
    return order.map((key) => {
      const { combos, first } = groups.get(key);
      if (combos.size < 2) return first;
      const many = total > 1 && combos.size >= total ? `in all ${total} combinations` : total > 1
        ? `in ${combos.size} of ${total} combinations` : `in ${combos.size} combinations`;
      return `${key} (${many})`;
    });
  }

  /** Put each entry's message at the deepest visible field its `loc` names, else at its section. */
  function showErrors(detail, combinationCount = 1) {
    const byKey = new Map();
    const fieldMessages = new Map(); // field → its messages, merged below
    const sectionMessages = new Map();
    for (const field of fields.values()) if (visible(field.spec)) byKey.set(field.spec.errorKey || field.spec.path, field);
    const unplaced = [];
    const placedMessages = new Set();
    const deferred = [];
    let first = null;
    for (const item of detail) {
      // Run errors are located under "body"; sweep errors under "body", "grid".
      const loc = (item.loc || []).map(String).filter((p, i) => !(i === 0 && p === "body"));
      if (loc[0] === "grid" || loc[0] === "base") loc.shift();
      const message = String(item.msg || "invalid").replace(/^Value error, /, "");
      let field = null;
      for (let n = loc.length; n > 0 && !field; n -= 1) field = byKey.get(loc.slice(0, n).join(".")) || null;
      if (field) {
        field.row.classList.add("invalid");
        for (const c of [field.control].flat()) c.setAttribute("aria-invalid", "true");
        fieldMessages.set(field, [...(fieldMessages.get(field) || []), message]);
        placedMessages.add(message);
        first = first || [field.control].flat()[0];
      } else deferred.push({ loc, message });
    }
    // A rule that also names a hidden field (e.g. threshold while a target is set) is already shown where it can be.
    for (const { loc, message } of deferred) {
      if (placedMessages.has(message)) continue;
      const section = sectionErrors.get(SECTION_OF[loc[0]]);
      if (section) {
        const text = `${loc.length > 1 ? `${loc.slice(1).join(".")}: ` : ""}${message}`;
        sectionMessages.set(section, [...(sectionMessages.get(section) || []), text]);
        first = first || section;
      } else unplaced.push(loc.length ? `${loc.join(".")}: ${message}` : message);
    }
    for (const [field, messages] of fieldMessages) field.error.textContent = mergeCombinations(messages, combinationCount).join("; ");
    for (const [section, texts] of sectionMessages) section.textContent = mergeCombinations(texts, combinationCount).join(" · ");
    summary.replaceChildren(h("div", { class: "notice error" },
      h("strong", { text: `The ${listMode ? "sweep" : "run"} was not started: ` }), "fix the marked fields.",
      unplaced.length ? h("ul", {}, mergeCombinations(unplaced, combinationCount).map((m) => h("li", { text: m }))) : null));
    if (first?.tagName === "P") first.scrollIntoView({ block: "center" });
    else first?.focus?.();
  }

  // ---- events -----------------------------------------------------------------------------------------
  const epochsInput = fields.get("training.epochs").control;
  epochsInput.addEventListener("focus", snapshotEpochs);
  epochsInput.addEventListener("input", rescaleEpochs);
  // A constant schedule is sparse from the start by default (start epoch 0); a start the user typed is kept.
  // Leaving `constant` again gives back the start it replaced (a cubic run kept the 0 and pruned before step 1).
  const scheduleKind = fields.get("pruning.schedule.kind");
  scheduleKind.control.addEventListener("change", () => {
    const start = fields.get("pruning.schedule.start_epoch");
    if (listMode) return;
    if (scheduleKind.control.value !== "constant") {
      if (startBeforeConstant !== null && single("pruning.schedule.start_epoch") === 0) writeField(start, startBeforeConstant);
      startBeforeConstant = null;
      start.note.textContent = "";
      return;
    }
    if (single("pruning.schedule.start_epoch") !== 1) return;
    startBeforeConstant = 1;
    writeField(start, 0);
    start.note.classList.remove("warn");
    start.note.textContent = "Set to 0 for a constant schedule: sparse before the first step.";
  });
  fields.get("pruning.schedule.start_epoch").control.addEventListener("input", () => { startBeforeConstant = null; });
  formEl.addEventListener("input", refresh);
  formEl.addEventListener("change", refresh);
  sweepToggle.addEventListener("change", () => {
    listMode = sweepToggle.checked;
    sweepHelp.hidden = !listMode;
    for (const field of fields.values()) setListMode(field, listMode);
    // Lists are not rescaled: a "Rescaled from ..." note would describe an edit the switch has undone.
    fields.get("training.epochs").note.textContent = "";
    fields.get("training.epochs").note.classList.remove("warn");
    snapshotEpochs();
    refresh();
  });
  presetSelect.addEventListener("change", () => {
    const preset = presets.find((p) => p.name === presetSelect.value);
    presetHelp.textContent = preset?.description || "";
    if (preset) fill(preset.config);
    else { // "— choose a preset —": the fields keep their values, but the run is no longer that preset
      presetName = null;
      refresh();
    }
  });

  formEl.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const unreadable = unreadableFields(fields, visible, listMode);
    if (unreadable.length) {
      showErrors(unreadable.map((field) => ({ loc: (field.spec.errorKey || field.spec.path).split("."),
        msg: unreadableMessage(field, listMode) })));
      return;
    }
    const body = collect();
    const combinationCount = listMode ? Object.values(body.grid).reduce((n, values) => n * values.length, 1) : 1;
    if (listMode && !Object.keys(body.grid).length) {
      summary.replaceChildren(h("div", { class: "notice error",
        text: "The sweep was not started: give at least one field several values (e.g. Target sparsity 0.9, 0.95)." }));
      return;
    }
    const label = submit.textContent;
    submit.disabled = true;
    submit.textContent = "Starting…";
    try {
      const created = await api(listMode ? "/api/sweeps" : "/api/runs", { method: "POST", body, signal: ctx.signal });
      ctx.navigate(listMode ? `/sweeps/${created.id}` : `/runs/${created.id}`);
    } catch (error) {
      if (isAbort(error)) return;
      if (error instanceof ApiError && error.status === 422 && Array.isArray(error.detail)) showErrors(error.detail, combinationCount);
      else summary.replaceChildren(h("div", { class: "notice error", text: `Not started: ${error.message}` }));
    } finally {
      submit.disabled = false;
      submit.textContent = label;
    }
  });

  // ---- initial values: a cloned run, else ?preset=NAME, else the API's defaults ---------------------------
  const wanted = presets.find((p) => p.name === ctx.query.get("preset"));
  const source = cloneResult?.run;
  if (source) {
    // The copy keeps the run's preset and its tags as they are now (tags can be edited after the run started).
    fill({ ...source.config, name: `${source.name} (copy)`.slice(0, 200), tags: [...(source.tags || [])],
      preset: source.config.preset ?? source.preset ?? null });
    if (presets.some((p) => p.name === presetName)) presetSelect.value = presetName;
  } else if (wanted) {
    presetSelect.value = wanted.name;
    presetHelp.textContent = wanted.description || "";
    fill(wanted.config);
  } else fill(defaults);
  if (ctx.query.get("sweep")) { // "New sweep" on the sweeps page
    sweepToggle.checked = true;
    sweepToggle.dispatchEvent(new Event("change", { bubbles: true }));
  }
}
