// The new-run form's fields: which exist, when each applies, what its help says, and its input control.
// Option lists come from GET /api/options; bounds and defaults from its JSON schema.

import { h } from "../dom.js";
import { deref, numberList, schemaAt, splitList, toNumber } from "./newrun-schema.js";

const REGROWTH = ["random", "gradient"];
const TRISTATE = [["", "default"], ["true", "on"], ["false", "off"]];
// The models model.width_multiplier applies to: WIDTH_MODELS in prunescope/contract/sources.py (the API refuses the
// field for any other model). GET /api/options does not list them; `width_models` is read should it ever do so.
const WIDTH_MODELS = ["resnet20", "resnet32", "resnet56", "vgg16_bn", "wrn22_2"];
// What the hidden-widths box shows for `model.hidden: []` (an MLP with no hidden layer); "[]" is read as it too.
export const NO_HIDDEN_LAYER = "none";

/**
 * The form's sections. `form` answers questions about the current values: `value(path)`, `mode()` (how the
 * sparsity is set), `pruningOn()`, `stepsPerEpoch()`, `epochs()`.
 */
export function fieldSections(options, schema, form) {
  const value = form.value;
  const isNm = () => value("pruning.granularity") === "n:m";
  const recovery = () => value("pruning.recovery.kind");
  const widthModels = Array.isArray(options.width_models) ? options.width_models : WIDTH_MODELS;
  const F = (path, label, kind, extra = {}) => ({ path, label, kind, ...extra });
  // Plugin models and datasets take keyword arguments (model.params / dataset.params); online workers say which.
  const offered = { model: options.plugin_models ?? {}, dataset: options.plugin_datasets ?? [] };
  const signatures = { model: options.plugin_model_params ?? {}, dataset: options.plugin_dataset_params ?? {} };
  const isPlugin = (kind) => {
    const name = value(`${kind}.name`);
    return kind === "model" ? Object.hasOwn(offered.model, name) : offered.dataset.includes(name);
  };
  const paramsHelp = (kind) => {
    const call = kind === "model" ? "build()" : "load()";
    const signature = signatures[kind][value(`${kind}.name`)];
    const intro = `A JSON object of ${call} keyword arguments, e.g. ${kind === "model" ? '{"width": 64}' : '{"split": "train"}'}. Empty: none`;
    if (!signature) return intro;
    const listed = signature.params.map((p) => (p.required ? `${p.name} (required)`
      : `${p.name} = ${JSON.stringify(p.default)}`));
    if (signature.any) listed.push("any other name");
    return `${intro}. ${call} takes: ${listed.length ? listed.join(", ") : "nothing"}`;
  };
  const perEpoch = () => {
    const steps = form.stepsPerEpoch();
    return steps ? ` (${steps} steps per epoch here)` : "";
  };
  return [
    { id: "run", title: "Run", fields: [
      F("name", "Name", "text", { help: "Shown in lists and charts; a sweep names its runs after it" }),
      F("tags", "Tags", "list", { help: "Comma-separated; the runs list filters and groups by them" }),
      F("device", "Device", "select", { options: options.devices,
        help: "auto: a GPU worker when one is online, else a CPU worker" }),
    ] },
    { id: "model", title: "Model and data", fields: [
      F("model.name", "Model", "select", { options: options.models }),
      F("model.hidden", "Hidden layer widths", "intlist", {
        help: `Comma-separated, e.g. 300, 100. ${NO_HIDDEN_LAYER} (or []): no hidden layer, a linear classifier. `
          + "Empty: the default widths",
        when: () => value("model.name") === "mlp", whenHidden: null }),
      F("model.width_multiplier", "Width multiplier", "float", {
        help: "Scales every channel width (0.25: a quarter of the paper's channels). Empty: 1, the paper's widths",
        when: () => widthModels.includes(value("model.name")), whenHidden: null }),
      F("model.params", "Model parameters", "json", { when: () => isPlugin("model"), whenHidden: null,
        help: () => paramsHelp("model") }),
      F("dataset.name", "Dataset", "select", { options: options.datasets }),
      F("dataset.path", "Image folder", "text", { when: () => value("dataset.name") === "image_folder", whenHidden: null,
        help: "A folder inside the worker's data directory (PRUNESCOPE_DATA_DIR), one subfolder of images per class" }),
      F("dataset.params", "Dataset parameters", "json", { when: () => isPlugin("dataset"), whenHidden: null,
        help: () => paramsHelp("dataset") }),
      F("dataset.limit", "Training samples (limit)", "int", { help: "Use only the first N training samples. Empty: all of them" }),
      F("dataset.augment", "Augment training images", "tristate"),
    ] },
    { id: "training", title: "Training", fields: [
      F("training.epochs", "Epochs", "int", { help: "Changing it moves the schedule's and recovery's epochs with it, in proportion" }),
      F("training.batch_size", "Batch size", "int", { help: "Samples per optimizer step" }),
      F("training.optimizer", "Optimizer", "select", { options: options.optimizers }),
      F("training.lr", "Learning rate", "float"),
      F("training.lr_schedule", "LR schedule", "select", { options: options.lr_schedules }),
      F("training.momentum", "Momentum", "float", { when: () => value("training.optimizer") === "sgd" }),
      F("training.nesterov", "Nesterov momentum", "check", { when: () => value("training.optimizer") === "sgd", whenHidden: false }),
      F("training.weight_decay", "Weight decay", "float", { help: "L2 penalty applied by the optimizer" }),
      F("training.seed", "Seed", "int", { help: "Initial weights, data order and random regrowth" }),
      F("training.precision", "Precision", "select", { options: options.precisions,
        help: "Autocast compute precision; weights and masks stay fp32, pruned weights exactly 0. fp16 needs a GPU" }),
      F("training.channels_last", "Channels-last", "check", { help: "Channels-last memory for conv models (faster on GPUs)" }),
      F("training.compile", "torch.compile", "check", { help: "Compile the model first: faster steps after a compile time" }),
    ] },
    { id: "pruning", title: "Pruning", fields: [
      F("pruning.criterion", "Criterion", "select", { options: options.criteria,
        help: "What scores a weight: |w|, |w·g| (gradient), accumulated −w·g (movement), mean activation of a neuron, or chance" }),
      F("pruning.activation_stat", "Activation statistic", "select", { options: options.activation_stats,
        help: "mean_abs: mean |activation|; apoz: share of zero activations", when: () => value("pruning.criterion") === "activation" }),
      F("pruning.granularity", "Granularity", "select", { options: options.granularities,
        help: "unstructured: single weights; neuron: whole rows / filters of hidden layers (each keeps at least "
          + "one; the output layer keeps its classes); n:m: keep n of every m" }),
      F("pruning.n_m", "N:M (keep n of every m)", "pair", { when: isNm, whenHidden: null }),
      F("pruning.scope", "Scope", "select", { options: options.scopes,
        help: "layer: every layer reaches the target; global: one ranking across all layers" }),
      F("pruning.distribution", "Per-layer distribution", "select", { options: options.distributions,
        help: "With scope 'layer': the same target everywhere (uniform), or denser small layers (ERK)" }),
      F("pruning.mode", "Sparsity set by", "select", { virtual: true, when: () => !isNm(),
        options: [["target", "target sparsity + schedule"], ["threshold", "absolute threshold θ"], ["std", "θ = q · std per layer"]] }),
      F("pruning.target_sparsity", "Target sparsity", "float", { help: "Share of the prunable weights removed, in [0, 1)",
        when: () => !isNm() && form.mode() === "target" }),
      F("pruning.threshold", "Threshold θ", "float", { help: "Prune where the score < θ",
        when: () => !isNm() && form.mode() === "threshold" }),
      F("pruning.threshold.std_scale", "q (θ = q · std)", "float", { errorKey: "pruning.threshold",
        schemaNode: () => deref(schema, schema.$defs?.StdScaleThreshold?.properties?.std_scale),
        when: () => !isNm() && form.mode() === "std" }),
      F("pruning.schedule.kind", "Schedule", "select", { options: options.schedules,
        help: "one_shot: all at once at the end of the start epoch; linear / cubic: gradually from start to end epoch; "
          + "constant: the target from the start epoch on (0: from the first step)" }),
      F("pruning.schedule.start_epoch", "Schedule start epoch", "int", {
        help: () => (value("pruning.schedule.kind") === "constant"
          ? "First mask update at the end of this epoch; 0 = before the first step (sparse from the start, as SET and RigL are)"
          : "First mask update at the end of this epoch; 0 = before the first step. One-shot prunes here, and this "
            + "epoch's record already shows it") }),
      F("pruning.schedule.end_epoch", "Schedule end epoch", "int", {
        help: () => `Target reached at the end of this epoch. Empty: 3/4 of the epochs`
          + (form.epochs() ? ` (${Math.ceil(0.75 * form.epochs())})` : "") }),
      F("pruning.schedule.every_steps", "Prune every (steps)", "int", { stepsAdvice: true,
        help: () => `Optimizer steps between mask updates. Empty: once per epoch${perEpoch()}` }),
      F("pruning.recovery.kind", "Recovery", "select", { options: options.recoveries,
        help: "How pruned weights come back: none; splice (DNS); random regrowth (SET); gradient regrowth (RigL); feedback (DPF)" }),
      F("pruning.recovery.margin", "Splice margin", "float", { when: () => recovery() === "splice",
        help: "A pruned weight returns above (1 + margin)·θ; an active one goes below (1 − margin)·θ" }),
      F("pruning.recovery.drop_fraction", "Drop fraction", "float", { when: () => REGROWTH.includes(recovery()),
        help: "Share of the active weights dropped (and as many regrown) at the first update" }),
      F("pruning.recovery.decay", "Drop-fraction decay", "select", { options: options.drop_decays,
        when: () => REGROWTH.includes(recovery()), help: "cosine: shrinks to 0 by the stop epoch; constant: stays" }),
      F("pruning.recovery.every_steps", "Update masks every (steps)", "int", { stepsAdvice: true,
        when: () => REGROWTH.includes(recovery()),
        help: () => `Optimizer steps between drop-and-regrow updates. Empty: 100, or once per epoch when an epoch is shorter${perEpoch()}` }),
      F("pruning.recovery.end_epoch", "Stop mask updates at epoch", "int", { when: () => recovery() !== "none", whenHidden: null,
        help: () => (REGROWTH.includes(recovery())
          ? "Drop-and-regrow stops after this epoch. Empty: at the schedule's end epoch"
          : "Masks stop changing after this epoch. Empty: they keep changing to the last epoch") }),
      F("pruning.regularization.l1", "L1 penalty", "float", { help: "Pushes weights towards 0 (sparse optimisation); 0: off" }),
      F("pruning.layers.include", "Layers to prune (globs)", "list", { help: "Comma-separated globs over parameter names, e.g. fc*.weight" }),
      F("pruning.layers.exclude", "Layers to skip (globs)", "list", { help: "Comma-separated" }),
    ] },
  ];
}

/** Fields that take a list of values in a sweep: numbers and choices (not the form's own switches). */
export const sweepable = (spec) => !spec.virtual && ["int", "float", "select"].includes(spec.kind);

export const idFor = (path) => `f-${path.replace(/[^a-z0-9]+/gi, "-")}`;

/** The row of one field: label, control, help, a note (warnings, rescaling) and the error slot. */
export function buildField(spec, schema) {
  const id = idFor(spec.path);
  const node = spec.schemaNode ? spec.schemaNode() : spec.virtual ? {} : schemaAt(schema, spec.path);
  const error = h("div", { class: "field-error", id: `${id}-error`, "aria-live": "polite" });
  const note = h("div", { class: "field-note", id: `${id}-note`, "aria-live": "polite" });
  const helpText = spec.help ?? node.description?.replaceAll("`", ""); // the schema's descriptions are Markdown
  const help = helpText ? h("div", { class: "help", id: `${id}-help` }) : null;
  const describedBy = [help ? `${id}-help` : null, `${id}-note`, `${id}-error`].filter(Boolean).join(" ");
  let control;
  if (spec.kind === "tristate") { // a boolean whose null means "the API's default" (the help says which)
    control = h("select", { id, name: spec.path, "aria-describedby": describedBy },
      TRISTATE.map(([value, text]) => h("option", { value, text })));
  } else if (spec.kind === "select") {
    control = h("select", { id, name: spec.path, "aria-describedby": describedBy },
      spec.options.map((o) => (Array.isArray(o) ? h("option", { value: o[0], text: o[1] }) : h("option", { value: o, text: o }))));
  } else if (spec.kind === "check") {
    control = h("input", { id, name: spec.path, type: "checkbox", "aria-describedby": describedBy });
  } else if (spec.kind === "pair") {
    control = [
      h("input", { id, type: "number", step: 1, min: 1, "aria-label": "n (kept)", inputmode: "numeric" }),
      h("input", { id: `${id}-m`, type: "number", step: 1, min: 2, "aria-label": "m (group size)", inputmode: "numeric" }),
    ];
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
  let row;
  if (spec.kind === "check") {
    row = h("div", { class: "field check", dataset: { path: spec.path } }, control, h("label", { for: id, text: spec.label }), help, note, error);
  } else if (spec.kind === "pair") {
    row = h("div", { class: "field", dataset: { path: spec.path }, role: "group", "aria-labelledby": `${id}-label` },
      h("label", { id: `${id}-label`, for: id, text: spec.label }),
      h("div", { class: "pair" }, control[0], h("span", { text: ":" }), control[1]), help, note, error);
  } else {
    row = h("div", { class: "field", dataset: { path: spec.path } }, h("label", { for: id, text: spec.label }), control, help, note, error);
  }
  const updateHelp = () => { if (help) help.textContent = typeof helpText === "function" ? helpText() : helpText; };
  return { spec, row, control, error, note, updateHelp };
}

/** Switch a field between one value and a list of values (sweep mode); the current value is kept. */
export function setListMode(field, on) {
  const { spec, control } = field;
  if (!sweepable(spec)) return;
  if (spec.kind === "select") {
    const chosen = [...control.selectedOptions].map((o) => o.value);
    control.multiple = on;
    control.size = on ? Math.min(4, control.options.length) : 0;
    if (!on) control.value = chosen[0] ?? control.options[0]?.value;
  } else {
    // A number input refuses "0.9, 0.95": a text input takes the list; the first value survives the switch back.
    const text = control.value;
    control.type = on ? "text" : "number";
    control.value = on ? text : (splitList(text)[0] ?? "");
  }
  field.row.classList.toggle("listable", on);
}

/** What a number box holding unreadable text reads as (see `readField`); `unreadableFields` finds them. */
export const NOT_A_NUMBER = "(not a number)";

/**
 * The visible fields whose box shows text the browser cannot read as a number, or (in list mode) as a list of
 * numbers ("0.5; 0.8" or "0.5 0.8": one value, not two, that nothing accepts).
 */
export const unreadableFields = (fields, visible, listMode = false) => [...fields.values()].filter(
  (field) => visible(field.spec) && (notJsonObject(field) || notANumberList(field, listMode) || incompletePair(field)
    || notWidthList(field) || [field.control].flat().some((c) => c.validity?.badInput)));

/** What `unreadableFields` says about a field it found (the submit marks the field with it). */
export function unreadableMessage(field, listMode) {
  if (notJsonObject(field)) return "not a JSON object: write it as {\"name\": value, …}, with quoted names";
  if (notANumberList(field, listMode)) return "not a list of numbers: separate the values with commas (e.g. 0.9, 0.95)";
  if (incompletePair(field) && ![field.control].flat().some((c) => c.validity?.badInput)) {
    return "N:M needs n and m, e.g. 2 : 4";
  }
  if (notWidthList(field)) {
    return `not a list of widths: give positive whole numbers separated by commas (e.g. 300, 100); ${NO_HIDDEN_LAYER}: no hidden layer`;
  }
  return "not a number: the box shows text that cannot be read as one (e.g. \"2e\")";
}

/** A pair field (N:M) with n or m left empty: the API would only say "Input should be a valid integer". */
export function incompletePair(field) {
  return field.spec.kind === "pair" && readField(field).some((v) => v === null);
}

/** A widths box ("300; 100", "0", "1.5") whose items are not all positive whole numbers. */
export function notWidthList(field) {
  if (field.spec.kind !== "intlist") return false;
  const value = readField(field);
  return Array.isArray(value) && value.some((v) => !Number.isInteger(v) || v < 1);
}

/** In list mode, a number field whose comma-separated items are not all numbers. */
export function notANumberList(field, listMode) {
  if (!listMode || !["int", "float"].includes(field.spec.kind)) return false;
  return readField(field, true).some((v) => v !== null && typeof v !== "number");
}

/** A JSON field holding text that is not a JSON object (`{width: 8`): said here, not as the API's "valid dictionary". */
export function notJsonObject(field) {
  if (field.spec.kind !== "json") return false;
  const value = readField(field);
  return value !== null && (typeof value !== "object" || Array.isArray(value));
}

/** The value of one field; in list mode, sweepable fields give an array of values. */
export function readField(field, listMode = false) {
  const { spec, control } = field;
  switch (spec.kind) {
    case "select": return listMode ? [...control.selectedOptions].map((o) => o.value) : control.value;
    case "check": return control.checked;
    case "tristate": return control.value === "" ? null : control.value === "true";
    case "pair": return control.map((c) => toNumber(c.value));
    case "int": case "float":
      // A number box showing text it cannot read ("2e", "1-2") has the value "": read as empty it would submit the
      // API's default, another experiment than the one on screen. It is kept as text, which nothing accepts.
      if (control.validity?.badInput) return listMode ? [NOT_A_NUMBER] : NOT_A_NUMBER;
      return listMode ? numberList(control.value) : toNumber(control.value);
    case "json": { // an object, or the text as typed (the API names the field in its 422)
      const text = control.value.trim();
      if (!text) return null;
      try { return JSON.parse(text); } catch { return text; }
    }
    case "list": return splitList(control.value);
    case "intlist": { // empty: null, the API's default; "none" (or "[]"): [], a model with no hidden layers
      const text = control.value.trim();
      if (text.toLowerCase() === NO_HIDDEN_LAYER || /^\[\s*\]$/.test(text)) return [];
      const items = splitList(text.replace(/^\[(.*)\]$/s, "$1")).map(toNumber);
      return items.length ? items : null;
    }
    default: return control.value;
  }
}

export function writeField(field, v) {
  const { spec, control } = field;
  switch (spec.kind) {
    case "check": control.checked = Boolean(v); break;
    case "tristate": control.value = v === true ? "true" : v === false ? "false" : ""; break;
    case "pair": control[0].value = v?.[0] ?? ""; control[1].value = v?.[1] ?? ""; break;
    case "list": control.value = Array.isArray(v) ? v.join(", ") : ""; break;
    case "intlist": control.value = !Array.isArray(v) ? "" : v.length ? v.join(", ") : NO_HIDDEN_LAYER; break;
    case "json": control.value = v === null || v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v); break;
    case "select":
      if (v === undefined || v === null) break;
      if (control.multiple) for (const o of control.options) o.selected = o.value === String(v);
      else control.value = String(v);
      break;
    default: control.value = v === null || v === undefined ? "" : String(v);
  }
}
