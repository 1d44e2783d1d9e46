// New-run form, generated from GET /api/options (lists, defaults, JSON schema) and GET /api/presets.
// Fields show only where they apply; the API validates, and each 422 message lands next to its field.

import { api, ApiError, isAbort } from "../api.js";
import { h } from "../dom.js";

/** Walk the pydantic JSON schema to a field, following $ref and the non-null branch of anyOf. */
function deref(root, node) {
  let current = node;
  for (let guard = 0; current && guard < 10; guard += 1) {
    if (current.$ref) {
      const target = current.$ref.replace(/^#\//, "").split("/").reduce((acc, key) => acc?.[key], root);
      current = { ...target, ...withoutKeys(current, ["$ref"]) };
    } else if (current.anyOf) {
      const branch = current.anyOf.find((s) => s.type !== "null");
      if (!branch) return current;
      current = { ...branch, ...withoutKeys(current, ["anyOf"]) };
    } else return current;
  }
  return current || {};
}

const withoutKeys = (obj, keys) => Object.fromEntries(Object.entries(obj).filter(([k]) => !keys.includes(k)));

function schemaAt(root, path) {
  let node = root;
  for (const key of path.split(".")) {
    node = deref(root, node)?.properties?.[key];
    if (!node) return {};
  }
  return deref(root, node);
}

const getPath = (obj, path) => path.split(".").reduce((acc, key) => (acc === null || acc === undefined ? undefined : acc[key]), obj);

function setPath(obj, path, value) {
  const keys = path.split(".");
  let node = obj;
  for (const key of keys.slice(0, -1)) {
    if (typeof node[key] !== "object" || node[key] === null) node[key] = {};
    node = node[key];
  }
  node[keys[keys.length - 1]] = value;
}

const splitList = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
/** A number when the text is one; otherwise the raw text, so the API names the field in its 422. */
const toNumber = (text) => (text.trim() === "" ? null : Number.isFinite(Number(text)) ? Number(text) : text);

const SECTION_OF = { name: "run", tags: "run", device: "run", preset: "run", model: "model", dataset: "model",
  training: "training", pruning: "pruning" };

export async function newRunPage(root, ctx) {
  root.append(h("h1", { text: "New run" }));
  const loading = h("p", { class: "muted", text: "Loading the form…" });
  root.append(loading);

  const [options, presetResult, cloneResult] = await Promise.all([
    api("/api/options", { signal: ctx.signal }),
    api("/api/presets", { signal: ctx.signal }).then((r) => ({ items: r.items || [] }), (error) => ({ error })),
    ctx.query.get("clone")
      ? api(`/api/runs/${encodeURIComponent(ctx.query.get("clone"))}`, { signal: ctx.signal }).then((run) => ({ run }), (error) => ({ error }))
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

  // ---- field specs ------------------------------------------------------------------------------
  const inputs = new Map(); // path -> element(s)
  const rows = new Map(); // path -> { row, error, input }
  const specs = [];
  const value = (path) => readField(specs.find((s) => s.path === path));

  const sparsityMode = () => (inputs.get("pruning.mode")?.value || "target");
  const prunOn = () => inputs.get("pruning.enabled")?.checked;
  const isNm = () => value("pruning.granularity") === "n:m";
  const recovery = () => value("pruning.recovery.kind");

  const F = (path, label, kind, extra = {}) => ({ path, label, kind, ...extra });
  const sections = [
    { id: "run", title: "Run", fields: [
      F("name", "Name", "text"),
      F("tags", "Tags", "list", { help: "Comma-separated" }),
      F("device", "Device", "select", { options: options.devices }),
    ] },
    { id: "model", title: "Model and data", fields: [
      F("model.name", "Model", "select", { options: options.models }),
      F("model.hidden", "Hidden layer widths", "intlist", { help: "Comma-separated, e.g. 300, 100", when: () => value("model.name") === "mlp" }),
      F("dataset.name", "Dataset", "select", { options: options.datasets }),
      F("dataset.limit", "Training samples (limit)", "int", { help: "Empty: the whole training set" }),
    ] },
    { id: "training", title: "Training", fields: [
      F("training.epochs", "Epochs", "int"),
      F("training.batch_size", "Batch size", "int"),
      F("training.optimizer", "Optimizer", "select", { options: options.optimizers }),
      F("training.lr", "Learning rate", "float"),
      F("training.lr_schedule", "LR schedule", "select", { options: options.lr_schedules }),
      F("training.momentum", "Momentum", "float", { when: () => value("training.optimizer") === "sgd" }),
      F("training.nesterov", "Nesterov momentum", "check", { when: () => value("training.optimizer") === "sgd" }),
      F("training.weight_decay", "Weight decay", "float"),
      F("training.seed", "Seed", "int"),
    ] },
    { id: "pruning", title: "Pruning", fields: [
      F("pruning.criterion", "Criterion", "select", { options: options.criteria }),
      F("pruning.activation_stat", "Activation statistic", "select", { options: ["mean_abs", "apoz"],
        when: () => value("pruning.criterion") === "activation" }),
      F("pruning.granularity", "Granularity", "select", { options: options.granularities }),
      F("pruning.n_m", "N:M (keep n of every m)", "pair", { when: isNm }),
      F("pruning.scope", "Scope", "select", { options: options.scopes }),
      F("pruning.distribution", "Per-layer distribution", "select", { options: options.distributions }),
      F("pruning.mode", "Sparsity set by", "select", { virtual: true, when: () => !isNm(),
        options: [["target", "target sparsity + schedule"], ["threshold", "absolute threshold θ"], ["std", "θ = q · std per layer"]] }),
      F("pruning.target_sparsity", "Target sparsity", "float", { help: "Fraction of weights removed, in [0, 1)",
        when: () => !isNm() && sparsityMode() === "target" }),
      F("pruning.threshold", "Threshold θ", "float", { help: "Prune where score < θ",
        when: () => !isNm() && sparsityMode() === "threshold" }),
      F("pruning.threshold.std_scale", "q (θ = q · std)", "float", { errorKey: "pruning.threshold",
        schemaNode: () => deref(schema, schema.$defs?.StdScaleThreshold?.properties?.std_scale),
        when: () => !isNm() && sparsityMode() === "std" }),
      F("pruning.schedule.kind", "Schedule", "select", { options: options.schedules }),
      F("pruning.schedule.start_epoch", "Schedule start epoch", "int"),
      F("pruning.schedule.end_epoch", "Schedule end epoch", "int", { help: "Empty: 3/4 of the epochs" }),
      F("pruning.schedule.every_steps", "Prune every (steps)", "int"),
      F("pruning.recovery.kind", "Recovery", "select", { options: options.recoveries }),
      F("pruning.recovery.margin", "Splice margin", "float", { when: () => recovery() === "splice" }),
      F("pruning.recovery.drop_fraction", "Drop fraction", "float", { when: () => ["random", "gradient"].includes(recovery()) }),
      F("pruning.recovery.decay", "Drop-fraction decay", "select", { options: ["cosine", "constant"],
        when: () => ["random", "gradient"].includes(recovery()) }),
      F("pruning.recovery.every_steps", "Update masks every (steps)", "int", { when: () => ["random", "gradient"].includes(recovery()) }),
      F("pruning.recovery.end_epoch", "Stop mask updates at epoch", "int", { help: "Empty: never",
        when: () => ["random", "gradient"].includes(recovery()) }),
      F("pruning.regularization.l1", "L1 penalty", "float"),
      F("pruning.layers.include", "Layers to prune (globs)", "list", { help: "Comma-separated, e.g. *" }),
      F("pruning.layers.exclude", "Layers to skip (globs)", "list", { help: "Comma-separated" }),
    ] },
  ];

  // ---- building inputs ----------------------------------------------------------------------------
  const idFor = (path) => `f-${path.replace(/[^a-z0-9]+/gi, "-")}`;

  function buildField(spec) {
    specs.push(spec);
    const id = idFor(spec.path);
    const node = spec.schemaNode ? spec.schemaNode() : spec.virtual ? {} : schemaAt(schema, spec.path);
    const errorEl = h("div", { class: "field-error", id: `${id}-error`, "aria-live": "polite" });
    const helpText = spec.help || node.description;
    const helpEl = helpText ? h("div", { class: "help", id: `${id}-help`, text: helpText }) : null;
    const describedBy = [helpEl ? `${id}-help` : null, `${id}-error`].filter(Boolean).join(" ");
    let control;
    let row;
    if (spec.kind === "select") {
      control = h("select", { id, name: spec.path, "aria-describedby": describedBy },
        spec.options.map((o) => (Array.isArray(o) ? h("option", { value: o[0], text: o[1] }) : h("option", { value: o, text: o }))));
    } else if (spec.kind === "check") {
      control = h("input", { id, name: spec.path, type: "checkbox", "aria-describedby": describedBy });
    } else if (spec.kind === "pair") {
      const n = h("input", { id, type: "number", step: 1, min: 1, "aria-label": "n (kept)", inputmode: "numeric" });
      const m = h("input", { id: `${id}-m`, type: "number", step: 1, min: 2, "aria-label": "m (group size)", inputmode: "numeric" });
      control = [n, m];
    } else {
      const numeric = spec.kind === "int" || spec.kind === "float";
      control = h("input", {
        id, name: spec.path, type: numeric ? "number" : "text", "aria-describedby": describedBy,
        step: spec.kind === "int" ? 1 : numeric ? "any" : null,
        inputmode: spec.kind === "int" ? "numeric" : spec.kind === "float" ? "decimal" : null,
        min: numeric ? node.minimum ?? node.exclusiveMinimum : null,
        max: numeric ? node.maximum ?? node.exclusiveMaximum : null,
        maxlength: node.maxLength,
      });
    }
    inputs.set(spec.path, control);
    if (spec.kind === "check") {
      row = h("div", { class: "field check", dataset: { path: spec.path } }, control,
        h("label", { for: id, text: spec.label }), helpEl, errorEl);
    } else if (spec.kind === "pair") {
      row = h("div", { class: "field", dataset: { path: spec.path }, role: "group", "aria-labelledby": `${id}-label` },
        h("label", { id: `${id}-label`, for: id, text: spec.label }),
        h("div", { class: "pair" }, control[0], h("span", { text: ":" }), control[1]), helpEl, errorEl);
    } else {
      row = h("div", { class: "field", dataset: { path: spec.path } }, h("label", { for: id, text: spec.label }), control, helpEl, errorEl);
    }
    rows.set(spec.path, { row, error: errorEl, control });
    return row;
  }

  function readField(spec) {
    if (!spec) return undefined;
    const control = inputs.get(spec.path);
    switch (spec.kind) {
      case "select": return control.value;
      case "check": return control.checked;
      case "pair": return control.map((c) => toNumber(c.value));
      case "int": case "float": return toNumber(control.value);
      case "list": return splitList(control.value);
      case "intlist": { // empty: null, the API's default, rather than a model with no hidden layers
        const items = splitList(control.value).map(toNumber);
        return items.length ? items : null;
      }
      default: return control.value;
    }
  }

  function writeField(spec, v) {
    const control = inputs.get(spec.path);
    switch (spec.kind) {
      case "check": control.checked = Boolean(v); break;
      case "pair": control[0].value = v?.[0] ?? ""; control[1].value = v?.[1] ?? ""; break;
      case "list": case "intlist": control.value = Array.isArray(v) ? v.join(", ") : ""; break;
      case "select": if (v !== undefined && v !== null) control.value = String(v); break;
      default: control.value = v === null || v === undefined ? "" : String(v);
    }
  }

  // ---- layout -------------------------------------------------------------------------------------
  const presetSelect = h("select", { id: "f-preset", name: "preset" },
    h("option", { value: "", text: presets.length ? "— choose a preset —" : "— none —" }),
    presets.map((p) => h("option", { value: p.name, text: p.name })));
  const presetHelp = h("span", { class: "muted", id: "f-preset-help" });
  presetSelect.setAttribute("aria-describedby", "f-preset-help");
  const presetNote = presetResult.error
    ? h("div", { class: "notice", text: `Presets are unavailable (${presetResult.error.message}); fill in the fields yourself.` }) : null;

  const summary = h("div", { id: "form-errors", role: "alert" });
  const sectionErrors = new Map();
  const fieldsets = sections.map((section) => {
    const sectionError = h("p", { class: "section-error", id: `section-${section.id}-error` });
    sectionErrors.set(section.id, sectionError);
    const grid = h("div", { class: "fields" }, section.fields.map(buildField));
    const legend = h("legend", { text: section.title });
    const fs = h("fieldset", { id: `section-${section.id}`, "aria-describedby": `section-${section.id}-error` }, legend);
    if (section.id === "pruning") {
      const toggle = h("input", { type: "checkbox", id: "f-pruning-enabled" });
      inputs.set("pruning.enabled", toggle);
      fs.append(h("div", { class: "field check", style: "padding-top:0;margin-bottom:8px" }, toggle,
        h("label", { for: "f-pruning-enabled", text: "Prune this network (off: a dense baseline)" })));
    }
    fs.append(sectionError, grid);
    return fs;
  });

  const submit = h("button", { type: "submit", class: "primary", text: "Start run" });
  const preview = h("pre", { id: "config-preview", style: "overflow:auto;max-height:320px;margin:8px 0 0" });
  const form = h("form", { class: "run-form", novalidate: true, "aria-label": "New run" },
    h("fieldset", { id: "section-preset" }, h("legend", { text: "Start from" }),
      h("div", { class: "preset-row" }, h("label", { for: "f-preset", text: "Preset" }), presetSelect, presetHelp),
      presetNote),
    summary,
    fieldsets,
    h("details", {}, h("summary", { text: "Config JSON that will be submitted" }), preview),
    h("div", { class: "form-actions" }, submit, h("a", { href: "/", text: "Cancel" })),
  );
  if (cloneResult?.run) {
    root.append(h("p", { class: "muted" }, "Cloned from ", h("a", { href: `/runs/${cloneResult.run.id}`, text: `run ${cloneResult.run.id} (${cloneResult.run.name})` }), "."));
  } else if (cloneResult?.error) {
    root.append(h("div", { class: "notice error", text: `Could not load the run to clone: ${cloneResult.error.message}` }));
  }
  root.append(form);

  // ---- behaviour ----------------------------------------------------------------------------------
  let presetName = null;

  function fill(config) {
    const pruning = config.pruning ?? null;
    for (const spec of specs) {
      if (spec.virtual) continue;
      let v = getPath(config, spec.path);
      if (spec.path.startsWith("pruning.") && pruning === null) v = getPath({ pruning: prunDefaults }, spec.path);
      if (v === undefined) v = getPath({ ...defaults, pruning: prunDefaults }, spec.path);
      if (spec.path === "pruning.threshold") v = typeof pruning?.threshold === "number" ? pruning.threshold : "";
      if (spec.path === "pruning.threshold.std_scale") v = pruning?.threshold?.std_scale ?? "";
      if (spec.path === "pruning.target_sparsity" && pruning === null) v = 0.9;
      writeField(spec, v);
    }
    inputs.get("pruning.enabled").checked = pruning !== null;
    const threshold = pruning?.threshold;
    inputs.get("pruning.mode").value = threshold && typeof threshold === "object" ? "std"
      : typeof threshold === "number" ? "threshold" : "target";
    presetName = config.preset ?? null;
    refresh();
  }

  function visible(spec) {
    if (spec.path.startsWith("pruning.") && !prunOn()) return false;
    return spec.when ? spec.when() : true;
  }

  function collect() {
    const out = {};
    for (const spec of specs) {
      if (spec.virtual || !visible(spec) || spec.path.startsWith("pruning.threshold")) continue;
      setPath(out, spec.path, readField(spec));
    }
    if (!prunOn()) out.pruning = null;
    else {
      const mode = sparsityMode();
      out.pruning.n_m = isNm() ? readField(specs.find((s) => s.path === "pruning.n_m")) : null;
      if (isNm()) {
        out.pruning.threshold = null;
        out.pruning.target_sparsity = null;
      } else if (mode === "target") out.pruning.threshold = null;
      else {
        out.pruning.target_sparsity = null;
        out.pruning.threshold = mode === "std" ? { std_scale: value("pruning.threshold.std_scale") } : value("pruning.threshold");
      }
    }
    if (presetName) out.preset = presetName;
    return out;
  }

  function refresh() {
    for (const spec of specs) rows.get(spec.path).row.hidden = !visible(spec);
    document.getElementById("section-pruning")?.querySelector(".fields")?.toggleAttribute("hidden", !prunOn());
    preview.textContent = JSON.stringify(collect(), null, 2);
  }

  function clearErrors() {
    summary.replaceChildren();
    for (const { row, error, control } of rows.values()) {
      row.classList.remove("invalid");
      error.textContent = "";
      for (const c of [control].flat()) c.removeAttribute("aria-invalid");
    }
    for (const el of sectionErrors.values()) el.textContent = "";
  }

  /** Put each 422 message next to the deepest visible field its `loc` names, else at its section. */
  function showErrors(detail) {
    const byKey = new Map();
    for (const spec of specs) if (visible(spec)) byKey.set(spec.errorKey || spec.path, spec.path);
    const unplaced = [];
    let first = null;
    for (const item of detail) {
      let loc = (item.loc || []).filter((p, i) => !(i === 0 && p === "body")).map(String);
      const message = String(item.msg || "invalid").replace(/^Value error, /, "");
      // Whole-config rules name their field at the start of the message ("pruning.schedule.end_epoch (50) is after…").
      const named = loc.length === 0 && message.match(/^([a-z_]+(?:\.[a-z_]+)+)\b/);
      if (named) loc = named[1].split(".");
      let placed = false;
      for (let n = loc.length; n > 0 && !placed; n -= 1) {
        const path = byKey.get(loc.slice(0, n).join("."));
        if (!path) continue;
        const { row, error, control } = rows.get(path);
        row.classList.add("invalid");
        for (const c of [control].flat()) c.setAttribute("aria-invalid", "true");
        if (!error.textContent.includes(message)) error.textContent = error.textContent ? `${error.textContent}; ${message}` : message;
        first = first || [control].flat()[0];
        placed = true;
      }
      if (placed) continue;
      const section = sectionErrors.get(SECTION_OF[loc[0]]);
      if (section) {
        const label = loc.length > 1 ? `${loc.slice(1).join(".")}: ` : "";
        const text = `${label}${message}`;
        section.textContent = section.textContent ? `${section.textContent} · ${text}` : text;
        first = first || section;
      } else unplaced.push(loc.length ? `${loc.join(".")}: ${message}` : message);
    }
    summary.replaceChildren(h("div", { class: "notice error" },
      h("strong", { text: "The run was not started: " }), "fix the marked fields.",
      unplaced.length ? h("ul", {}, unplaced.map((m) => h("li", { text: m }))) : null));
    if (first && first.focus) {
      if (first.tagName === "P") first.scrollIntoView({ block: "center" });
      else first.focus();
    }
  }

  form.addEventListener("input", refresh);
  form.addEventListener("change", refresh);
  presetSelect.addEventListener("change", () => {
    const preset = presets.find((p) => p.name === presetSelect.value);
    presetHelp.textContent = preset?.description || "";
    if (preset) {
      fill(preset.config);
      presetName = preset.name;
      refresh();
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    submit.disabled = true;
    submit.textContent = "Starting…";
    try {
      const run = await api("/api/runs", { method: "POST", body: collect(), signal: ctx.signal });
      ctx.navigate(`/runs/${run.id}`);
    } catch (error) {
      if (isAbort(error)) return;
      if (error instanceof ApiError && error.status === 422 && Array.isArray(error.detail)) showErrors(error.detail);
      else summary.replaceChildren(h("div", { class: "notice error", text: `The run was not started: ${error.message}` }));
    } finally {
      submit.disabled = false;
      submit.textContent = "Start run";
    }
  });

  // Initial values: a cloned run, else ?preset=NAME, else the API's defaults.
  const wanted = ctx.query.get("preset");
  const preset = presets.find((p) => p.name === wanted);
  if (cloneResult?.run) fill(cloneResult.run.config);
  else if (preset) {
    presetSelect.value = preset.name;
    presetHelp.textContent = preset.description || "";
    fill(preset.config);
    presetName = preset.name;
    refresh();
  } else fill(defaults);
}
