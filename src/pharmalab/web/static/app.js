// pharmalab serve: figures, sortable and filterable tables, CSV export, runs. No dependencies
// besides plotly.js (served from the plotly Python package).
"use strict";

function csrfHeaders() {
  return { "Content-Type": "application/json",
           "X-Pharmalab-CSRF": document.querySelector('meta[name="csrf"]').content };
}

function drawFigures() {
  document.querySelectorAll(".plot[data-figure]").forEach((el) => {
    const fig = JSON.parse(document.getElementById(el.dataset.figure).textContent);
    window.Plotly.newPlot(el, fig.data, fig.layout, { responsive: true, displaylogo: false });
  });
}

function cellValue(td, numeric) {
  const text = td.textContent.trim();
  if (!numeric) return text.toLowerCase();
  const n = parseFloat(text.replace(/,/g, ""));
  return Number.isNaN(n) ? -Infinity : n;
}

function makeSortable(table) {
  table.querySelectorAll("th").forEach((th, index) => {
    th.addEventListener("click", () => {
      const numeric = th.dataset.numeric === "true";
      const ascending = !th.classList.contains("sorted-asc");
      table.querySelectorAll("th").forEach((h) => h.classList.remove("sorted-asc", "sorted-desc"));
      th.classList.add(ascending ? "sorted-asc" : "sorted-desc");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = cellValue(a.cells[index], numeric), y = cellValue(b.cells[index], numeric);
        return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
      });
      rows.forEach((r) => body.appendChild(r));
    });
  });
}

function csvOf(table) {
  const quote = (s) => (/[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s);
  const lines = [Array.from(table.tHead.rows[0].cells).map((c) => quote(c.textContent.trim()))];
  Array.from(table.tBodies[0].rows).filter((r) => !r.hidden).forEach((r) => {
    lines.push(Array.from(r.cells).map((c) => quote(c.textContent.trim())));
  });
  return lines.map((l) => l.join(",")).join("\n") + "\n";
}

function setupTables() {
  document.querySelectorAll(".table-block").forEach((block) => {
    const table = block.querySelector("table");
    makeSortable(table);
    const filter = block.querySelector(".table-filter");
    if (filter) {
      filter.addEventListener("input", () => {
        const q = filter.value.trim().toLowerCase();
        Array.from(table.tBodies[0].rows).forEach((r) => {
          r.hidden = q !== "" && !r.textContent.toLowerCase().includes(q);
        });
      });
    }
    const button = block.querySelector(".csv-export");
    button.addEventListener("click", () => {
      const blob = new Blob([csvOf(table)], { type: "text/csv" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = (table.dataset.title || "table").replace(/[^A-Za-z0-9_-]+/g, "_") + ".csv";
      document.body.appendChild(a); a.click(); a.remove();
    });
  });
}

function setupSeriesSearch() {
  const search = document.getElementById("series-search");
  if (!search) return;
  search.addEventListener("input", () => {
    const q = search.value.trim().toLowerCase();
    document.querySelectorAll(".series-list li").forEach((li) => {
      li.hidden = q !== "" && !li.textContent.toLowerCase().includes(q);
    });
    if (q) document.querySelectorAll(".series-list details").forEach((d) => { d.open = true; });
  });
}

function showErrors(errors) {
  document.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; e.classList.remove("ok"); });
  errors.forEach((err) => {
    const key = err.field.startsWith("cohort") ? "cohorts" : err.field;
    const box = document.querySelector(`.field-error[data-field="${key}"]`) ||
                document.querySelector('.field-error[data-field="upload"]');
    box.textContent += (box.textContent ? "\n" : "") +
      (err.field.startsWith("cohort:") ? err.field.slice(7) + ": " : "") + err.message;
  });
}

async function readUpload() {
  const cohorts = {};
  for (const f of document.getElementById("cohort-files").files) cohorts[f.name] = await f.text();
  return { study_toml: document.getElementById("study-toml").value, cohorts };
}

async function post(url, body) {
  const response = await fetch(url, { method: "POST", headers: csrfHeaders(),
                                      body: JSON.stringify(body), credentials: "same-origin" });
  let data = {};
  try { data = await response.json(); } catch (e) { data = { ok: false, errors: [{ field: "upload", message: `${response.status} ${response.statusText}` }] }; }
  return data;
}

function setupRunForm() {
  const form = document.getElementById("run-form");
  if (!form) return;
  document.getElementById("study-file").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (file) document.getElementById("study-toml").value = await file.text();
  });
  const result = document.getElementById("form-result");
  document.getElementById("validate").addEventListener("click", async () => {
    const data = await post("/api/validate", await readUpload());
    if (data.ok) {
      showErrors([]);
      result.className = "field-error ok";
      result.textContent = "Valid. Steps: " + data.steps.join(", ");
    } else { result.textContent = ""; showErrors(data.errors || []); }
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = await post("/api/runs", await readUpload());
    if (data.ok) window.location.href = data.url;
    else { result.textContent = ""; showErrors(data.errors || []); }
  });
}

function setupRunStatus() {
  const box = document.getElementById("run");
  if (!box) return;
  const id = box.dataset.runId;
  const cancel = document.getElementById("cancel");
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    await post(`/api/runs/${id}/cancel`, {});
  });
  const poll = async () => {
    const response = await fetch(`/api/runs/${id}`, { credentials: "same-origin" });
    const run = await response.json();
    const status = document.getElementById("run-status");
    status.textContent = run.status; status.className = `status status-${run.status}`;
    const list = document.getElementById("run-steps");
    const titles = run.plan.length ? run.plan : Object.keys(run.steps);
    list.innerHTML = "";
    titles.forEach((title) => {
      const li = document.createElement("li");
      const p = run.steps[title];
      const final = (run.step_status || {})[title];
      let state = final || (p ? (title === run.current && run.status === "running" ? "running" : "done") : "pending");
      if (!final && p && run.status !== "running" && title === run.current && run.status !== "ok") state = run.status;
      let text = `${title}: ${state}`;
      if (p && p.total) text += ` (${p.done}/${p.total}${p.label ? ", " + p.label : ""})`;
      else if (p && p.label) text += ` (${p.label})`;
      li.textContent = text; li.className = `step-${state}`; li.dataset.step = title;
      list.appendChild(li);
    });
    document.getElementById("run-error").textContent = run.error || "";
    if (run.results) {
      const link = document.getElementById("run-results");
      link.href = "/study?id=" + encodeURIComponent("0/" + run.results); link.hidden = false;
    }
    if (["queued", "running"].includes(run.status)) setTimeout(poll, 500);
    else cancel.disabled = true;
  };
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  if (window.Plotly) drawFigures();
  setupTables();
  setupSeriesSearch();
  setupRunForm();
  setupRunStatus();
});
