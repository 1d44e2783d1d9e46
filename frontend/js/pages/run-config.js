// A run's configuration beside its results (the hyperparameter panel), and what its header and empty charts say.

import { FINISHED, h } from "../dom.js";

/** A config as [path, value] rows: nested objects become dotted paths, lists and scalars stay values. */
export function flattenConfig(config, prefix = "") {
  const rows = [];
  for (const [key, value] of Object.entries(config || {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) rows.push(...flattenConfig(value, path));
    else rows.push([path, value]);
  }
  return rows;
}

/** How a config value reads: lists joined, null as "—" (unset: the engine's default applies). */
export function formatValue(value) {
  if (value === null || value === undefined) return "—";
  if (Array.isArray(value)) return value.length ? value.map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))).join(", ") : "none";
  if (typeof value === "object") return Object.keys(value).length ? JSON.stringify(value) : "—";
  return String(value);
}

// Top-level scalars (name, tags, device, preset) form the "run" group; each block is its own group, and the
// pruning block is split by its sub-blocks so schedule, recovery and layers read as units.
function groups(config) {
  const out = new Map([["run", []]]);
  for (const [key, value] of Object.entries(config || {})) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [path, v] of flattenConfig(value)) {
        const [head, ...rest] = path.split(".");
        const group = key === "pruning" && rest.length ? `pruning.${head}` : key;
        if (!out.has(group)) out.set(group, []);
        out.get(group).push([group === key ? path : rest.join("."), v]);
      }
    } else if (key === "pruning") {
      out.set("pruning", [["pruning", value === null ? "none (a dense run)" : value]]);
    } else {
      out.get("run").push([key, value]);
    }
  }
  return [...out.entries()].filter(([, rows]) => rows.length);
}

// What an unset recovery.every_steps means for SET/RigL-style recoveries (prunescope/contract/pruning_rules.py:
// DEFAULT_DROP_EVERY, drop_interval): stored configs leave the field out, so the panel says what applied instead of hiding it.
const REGROWING = ["random", "gradient"];
const RECOVERY_DEFAULT = "— (default: 100, or once an epoch when an epoch is shorter)";

function withRecoveryDefault(grouped) {
  return grouped.map(([group, rows]) => {
    if (group !== "pruning.recovery" || !REGROWING.includes(rows.find(([key]) => key === "kind")?.[1])) return [group, rows];
    const at = rows.findIndex(([key]) => key === "every_steps");
    if (at >= 0) return [group, rows.map((row, i) => (i === at && row[1] == null ? ["every_steps", RECOVERY_DEFAULT] : row))];
    const after = rows.findIndex(([key]) => key === "kind") + 1;
    return [group, [...rows.slice(0, after), ["every_steps", RECOVERY_DEFAULT], ...rows.slice(after)]];
  });
}

// On a phone the panel would push every chart a few screens down: there it starts closed, one tap opens it.
const NARROW = "(max-width: 640px)";

/** The hyperparameter panel: every field of the run's config, grouped by block; a tracked run's config is the
 * script's own (free-form key/value), shown the same way. */
export function configPanel(config, { tracked = false } = {}) {
  const body = h("div", { class: "config-groups" }, (tracked ? groups(config) : withRecoveryDefault(groups(config))).map(([group, rows]) => h("section", { class: "config-group" },
    h("h3", { text: group }),
    h("dl", {}, rows.map(([key, value]) => h("div", { dataset: { field: group === "run" ? key : `${group}.${key}` } },
      h("dt", { text: key.replace(/_/g, " ") }), h("dd", { text: formatValue(value) })))))));
  const empty = !Object.keys(config || {}).length;
  return h("details", { class: "card config-panel", id: "config-panel", open: !window.matchMedia(NARROW).matches },
    h("summary", {}, h("h2", { text: tracked ? "Configuration (as the script logged it)" : "Configuration" })),
    empty ? h("p", { class: "muted", text: "The script logged no configuration." }) : body);
}

/** Sparsity and accuracies for the header: the last recorded epoch's, else what the run itself reports. */
export function headlineFigures(run, sorted) {
  const last = sorted.length ? sorted[sorted.length - 1] : null;
  const accuracies = sorted.map((e) => e.test_acc).filter((v) => v !== null && v !== undefined);
  return {
    sparsity: last?.sparsity ?? run.sparsity,
    test_acc: last?.test_acc ?? run.test_acc,
    best_test_acc: accuracies.length ? Math.max(...accuracies) : run.best_test_acc,
  };
}

/** What the run's empty charts are waiting for — or, for a finished run, why nothing will come. */
export function waitingFor(run) {
  if (run.status === "failed") return "The run failed before it recorded an epoch";
  if (run.status === "cancelled") return "The run was cancelled before it recorded an epoch";
  if (FINISHED.has(run.status)) return `The run ended (${run.status}) without recording an epoch`;
  if (run.status === "queued") return "Waiting for a worker to start the run; charts fill in live";
  if (run.kind === "tracked") return "Waiting for the script's first run.log(epoch=…); charts fill in live as it logs";
  return "Waiting for the first epoch; charts fill in live as the worker reports";
}

/** For a queued run: why no worker will start it (none online takes its queue), or null when one will. */
export function noWorkerNote(run, workers) {
  if (workers.some((w) => (w.queues || []).includes(run.queue))) return null;
  const others = [...new Set(workers.flatMap((w) => w.queues || []))].sort();
  return `No online worker takes the “${run.queue}” queue this run waits in (device ${run.device}; `
    + (others.length ? `online workers take: ${others.join(", ")}` : "no worker is online")
    + `). It starts when one does: prunescope worker --queues ${run.queue}`;
}

/** The first line a person needs from an error: a Python traceback's last line names the exception. */
export function errorHeadline(error) {
  const lines = String(error || "").split("\n").map((l) => l.trim()).filter(Boolean);
  if (!lines.length) return "";
  return lines[0].startsWith("Traceback") ? lines[lines.length - 1] : lines[0];
}

/** Notices under the header: why a run failed (one line, the detail behind a disclosure), or that it was cancelled. */
export function statusNotice(run, sorted) {
  if (run.status === "failed") {
    const headline = errorHeadline(run.error) || "The worker gave no reason.";
    const detail = String(run.error || "").trim();
    return [h("div", { class: "notice error run-failure", role: "alert", id: "run-failure" },
      h("strong", { text: "Failed: " }), h("span", { class: "failure-reason", text: headline }),
      detail && detail !== headline ? h("details", { class: "failure-detail" }, h("summary", { text: "Details" }),
        h("pre", { text: detail })) : null)];
  }
  if (run.status === "cancelled") {
    const last = sorted.length ? sorted[sorted.length - 1].epoch : 0;
    const text = last ? `Cancelled after epoch ${last} of ${run.epochs_total}; the figures above are those of epoch ${last}.`
      : "Cancelled before the first epoch.";
    return [h("div", { class: "notice", id: "run-cancelled", text })];
  }
  if (run.error) return [h("div", { class: "notice error" }, h("pre", { text: run.error }))];
  return [];
}
