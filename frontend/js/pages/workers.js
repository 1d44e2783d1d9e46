// Workers: who is online, on what device, running which run; refreshed every few seconds.

import { api, isAbort } from "../api.js";
import { dateTime, duration, h } from "../dom.js";

export async function workersPage(root, ctx) {
  const tbody = h("tbody");
  const errorBox = h("div", { role: "alert" });
  root.append(
    h("h1", { text: "Workers" }),
    h("p", { class: "muted" }, "Workers that sent a heartbeat recently. Start one with ", h("code", { text: "prunescope worker --queues cpu" }), " (or gpu)."),
    errorBox,
    h("div", { class: "table-wrap" }, h("table", { id: "workers-table" },
      h("thead", {}, h("tr", {}, ["Name", "Host", "Queues", "Device", "GPU memory", "Current run", "Started", "Last heartbeat"]
        .map((label) => h("th", { scope: "col", class: label === "GPU memory" ? "num" : "", text: label })))),
      tbody)),
  );

  async function refresh() {
    try {
      const { items } = await api("/api/workers", { signal: ctx.signal });
      errorBox.replaceChildren();
      if (!items.length) {
        tbody.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "empty", text: "No worker is online." })));
        return;
      }
      tbody.replaceChildren(...items.map((w) => h("tr", {},
        h("td", { text: w.name }),
        h("td", { text: w.hostname || "—" }),
        h("td", { text: (w.queues || []).join(", ") || "—" }),
        h("td", { text: w.device_name && w.device_name !== w.device ? `${w.device} · ${w.device_name}` : w.device }),
        h("td", { class: "num", text: w.gpu_memory_mb ? `${Math.round(w.gpu_memory_mb).toLocaleString("en-US")} MB` : "—" }),
        h("td", {}, w.current_run_id ? h("a", { href: `/runs/${w.current_run_id}`, text: `run ${w.current_run_id}` }) : "idle"),
        h("td", { text: dateTime(w.started_at) }),
        h("td", { text: `${duration(w.heartbeat_age_seconds)} ago` }),
      )));
    } catch (error) {
      if (isAbort(error)) return;
      errorBox.replaceChildren(h("div", { class: "notice error", text: `Could not load workers: ${error.message}` }));
    }
  }
  ctx.every(5000, refresh);
  await refresh();
}
