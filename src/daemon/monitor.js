// distccd's monitor page: polls /status.json and redraws. No framework, no build step.
// Every value from the server goes in with textContent, never as HTML.
"use strict";

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function seconds(ms) {
  return (ms / 1000).toFixed(1) + " s";
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function render(s) {
  document.getElementById("host").textContent = s.hostname;
  document.title = "distccd on " + s.hostname;
  const slots = s.slots;
  document.getElementById("summary").textContent =
    slots.busy + " of " + slots.limit + " slots busy, " + slots.queued +
    " waiting; distccd " + s.version;
  document.getElementById("state").textContent = "";
  document.getElementById("state").className = "";

  const bySlot = new Map(s.running.map(j => [j.slot, j]));
  const count = Math.max(slots.limit, ...s.running.map(j => j.slot + 1));
  const rows = [];
  for (let i = 0; i < count; i++) {
    const tr = document.createElement("tr");
    const j = bySlot.get(i);
    cell(tr, String(i));
    if (j) {
      tr.className = "busy";
      cell(tr, j.client);
      cell(tr, j.compiler);
      cell(tr, j.file, "file");
      cell(tr, seconds(j.elapsed_ms));
    } else {
      tr.className = "idle";
      cell(tr, "idle");
      cell(tr, "");
      cell(tr, "");
      cell(tr, "");
    }
    rows.push(tr);
  }
  fill(document.querySelector("#slots tbody"), rows);

  const failures = s.recent_failures.map(f => {
    const tr = document.createElement("tr");
    tr.className = "fail";
    cell(tr, new Date(f.time * 1000).toLocaleTimeString());
    cell(tr, f.client);
    cell(tr, f.outcome);
    cell(tr, f.compiler);
    cell(tr, f.file, "file");
    cell(tr, f.detail);
    return tr;
  });
  if (failures.length === 0) {
    const tr = document.createElement("tr");
    tr.className = "idle";
    cell(tr, "none");
    failures.push(tr);
  }
  fill(document.querySelector("#failures tbody"), failures);

  fill(document.querySelector("#counters tbody"), Object.entries(s.counters).map(([k, v]) => {
    const tr = document.createElement("tr");
    cell(tr, k);
    cell(tr, String(v));
    return tr;
  }));
}

async function poll() {
  try {
    const r = await fetch("/status.json", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (e) {
    const state = document.getElementById("state");
    state.textContent = "lost contact with the daemon: " + e.message;
    state.className = "lost";
  }
  setTimeout(poll, 1000);
}

poll();
