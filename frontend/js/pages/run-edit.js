// Run metadata on the run page: rename, retag, notes (PATCH), and delete a finished run (DELETE).

import { api, ApiError, isAbort } from "../api.js";
import { h } from "../dom.js";

const splitTags = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

/**
 * An "Edit" button and the panel it opens. `getRun()` gives the run as shown now; `onSaved(run)` gets the
 * API's answer. 422 messages land next to their fields.
 */
export function runEditor({ base, signal, getRun, onSaved }) {
  const name = h("input", { id: "edit-name", type: "text", maxlength: 200 });
  const tags = h("input", { id: "edit-tags", type: "text" });
  const notes = h("textarea", { id: "edit-notes", rows: 4, maxlength: 20000 });
  const errors = { name: h("div", { class: "field-error", id: "edit-name-error" }), tags: h("div", { class: "field-error", id: "edit-tags-error" }),
    notes: h("div", { class: "field-error", id: "edit-notes-error" }) };
  const general = h("div", { class: "field-error", role: "alert" });
  const save = h("button", { type: "submit", class: "primary", text: "Save" });
  const field = (label, control, key, help) => h("div", { class: "field" }, h("label", { for: control.id, text: label }), control,
    help ? h("div", { class: "help", text: help }) : null, errors[key]);
  for (const [key, control] of [["name", name], ["tags", tags], ["notes", notes]]) control.setAttribute("aria-describedby", errors[key].id);
  const panel = h("form", { class: "edit-panel", hidden: true, novalidate: true, "aria-label": "Edit run" },
    h("div", { class: "fields" }, field("Name", name, "name"), field("Tags", tags, "tags", "Comma-separated")),
    field("Notes", notes, "notes"), general,
    h("div", { class: "form-actions" }, save, h("button", { type: "button", text: "Close", onclick: () => close() })));
  const button = h("button", { type: "button", id: "edit-run", "aria-expanded": "false", text: "Edit", onclick: () => (panel.hidden ? open() : close()) });

  function open() {
    const run = getRun();
    name.value = run.name;
    tags.value = (run.tags || []).join(", ");
    notes.value = run.notes || "";
    clear();
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    name.focus();
  }
  function close() {
    panel.hidden = true;
    button.setAttribute("aria-expanded", "false");
  }
  function clear() {
    general.textContent = "";
    for (const el of Object.values(errors)) el.textContent = "";
  }

  panel.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    save.disabled = true;
    try {
      const run = await api(base, { method: "PATCH", signal, body: { name: name.value, tags: splitTags(tags.value), notes: notes.value } });
      onSaved(run);
      close();
    } catch (error) {
      if (isAbort(error)) return;
      if (error instanceof ApiError && error.status === 422 && Array.isArray(error.detail)) {
        for (const item of error.detail) {
          const key = (item.loc || []).find((p) => p in errors);
          const message = String(item.msg || "invalid").replace(/^Value error, /, "");
          if (key) errors[key].textContent = message;
          else general.textContent = message;
        }
      } else general.textContent = `Not saved: ${error.message}`;
    } finally {
      save.disabled = false;
    }
  });
  return { button, panel };
}

/** "Delete run" that asks once more inline (no modal dialog), then deletes and calls `onDeleted`. */
export function deleteControl({ base, signal, onDeleted, onError }) {
  const button = h("button", { type: "button", class: "danger", id: "delete-run", text: "Delete run" });
  const confirm = h("button", { type: "button", class: "danger", hidden: true, text: "Delete for good" });
  const keep = h("button", { type: "button", hidden: true, text: "Keep" });
  let timer = null;
  const ask = (asking) => {
    clearTimeout(timer);
    button.hidden = asking;
    confirm.hidden = keep.hidden = !asking;
    if (asking) {
      confirm.focus();
      timer = setTimeout(() => ask(false), 8000);
    }
  };
  button.addEventListener("click", () => ask(true));
  keep.addEventListener("click", () => { ask(false); button.focus(); });
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    try {
      await api(base, { method: "DELETE", signal });
      onDeleted();
    } catch (error) {
      if (isAbort(error)) return;
      onError(error);
      ask(false);
    } finally {
      confirm.disabled = false;
    }
  });
  const el = h("span", { class: "delete-control" }, button, confirm, keep);
  return { el, setVisible: (visible) => { el.hidden = !visible; if (!visible) ask(false); }, stop: () => clearTimeout(timer) };
}
