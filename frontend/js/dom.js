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

export const ACTIVE = new Set(["queued", "running"]);

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
