// DOM building and formatting helpers. Data only ever enters the page as text nodes or attribute values.

/**
 * Create an element. `attrs`: `class`, `text`, `dataset`, `on<event>` handlers, DOM properties
 * (`value`, `checked`, `disabled`, `hidden`, ...) and anything else as an attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key in PROPS) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

const PROPS = { value: 1, checked: 1, disabled: 1, hidden: 1, selected: 1, htmlFor: 1 };

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Plotly renders a little HTML in names, titles and hover text: user text must reach it escaped. */
export function plotlyText(value) {
  return String(value ?? "").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function pct(value, digits = 1) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(digits)}%`;
}

export function num(value, digits = 4) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? value.toExponential(2) : value.toPrecision(digits);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** API timestamps are UTC; naive ones (SQLite) get a Z so the browser does not read them as local time. */
export function parseTime(value) {
  if (!value) return null;
  const text = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
  const date = new Date(text);
  return isNaN(date) ? null : date;
}

export function dateTime(value) {
  const date = parseTime(value);
  if (!date) return "—";
  return date.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

export function statusBadge(status) {
  return h("span", { class: `badge ${status}`, text: status });
}

// Run statuses come from GET /api/options (app.js loads them before the first page): never retyped here.
/** Every run status, in the API's order. */
export const STATUSES = [];
/** Statuses a run never leaves. */
export const FINISHED = new Set();
/** Statuses of a run that is still queued or running (every status that is not finished). */
export const ACTIVE = new Set();

export function setStatuses({ statuses = [], finished_statuses: finished = [] } = {}) {
  STATUSES.splice(0, STATUSES.length, ...statuses);
  FINISHED.clear();
  ACTIVE.clear();
  for (const status of statuses) (finished.includes(status) ? FINISHED : ACTIVE).add(status);
}

export const isFinished = (status) => FINISHED.has(status);
export const isActive = (status) => ACTIVE.has(status);

/** "3 min ago" for a timestamp; the exact time belongs in a title. */
export function relativeTime(value, now = Date.now()) {
  const date = parseTime(value);
  if (!date) return "—";
  const seconds = Math.round((now - date.getTime()) / 1000);
  if (seconds < 45) return "just now";
  const units = [["day", 86400], ["h", 3600], ["min", 60]];
  for (const [unit, size] of units) {
    const count = Math.floor(seconds / size);
    if (count >= 1) return unit === "day" ? `${count} day${count === 1 ? "" : "s"} ago` : `${count} ${unit} ago`;
  }
  return "1 min ago";
}

/**
 * Ask before something that cannot be undone, in the page's own <dialog> (no window.confirm).
 * Resolves true when the user confirms.
 */
export function confirmDialog(message, { confirm = "OK", cancel = "Keep it", danger = true } = {}) {
  return new Promise((resolve) => {
    const yes = h("button", { type: "submit", value: "yes", class: danger ? "danger" : "primary", text: confirm });
    const no = h("button", { type: "submit", value: "no", text: cancel });
    const dialog = h("dialog", { class: "confirm-dialog", "aria-label": confirm },
      h("form", { method: "dialog" }, h("p", { text: message }), h("div", { class: "actions" }, no, yes)));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}

/** A progress bar with "epoch i/N · ETA" under it; `update` changes it in place. */
export function progressBar() {
  const fill = h("span");
  const bar = h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, fill);
  const label = h("div", { class: "label" });
  const el = h("div", { class: "progress" }, bar, label);
  const update = ({ epochs_done = 0, epochs_total = 0, eta_seconds = null, status = "" }) => {
    const ratio = epochs_total ? Math.min(1, epochs_done / epochs_total) : 0;
    fill.style.width = `${(ratio * 100).toFixed(1)}%`;
    bar.setAttribute("aria-valuenow", String(Math.round(ratio * 100)));
    bar.setAttribute("aria-label", `epoch ${epochs_done} of ${epochs_total}`);
    let text = `epoch ${epochs_done}/${epochs_total}`;
    if (status === "running" && eta_seconds !== null && eta_seconds !== undefined) text += ` · ETA ${duration(eta_seconds)}`;
    label.textContent = text;
  };
  return { el, update };
}

/** A page whose object did not load: its title and one line, "There is no run 7." for a 404. */
export function loadFailure(root, kind, id, error, notFound) {
  root.append(h("h1", { text: `${kind[0].toUpperCase()}${kind.slice(1)} ${id}` }), h("div", {
    class: "notice error", role: "alert",
    text: notFound ? `There is no ${kind} ${id}.` : `Could not load ${kind} ${id}: ${error.message}` }));
}
