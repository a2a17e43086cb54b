// Guideline administration: confirmations, the upload size check, live job progress.
import { jobCounts, safeLink, uploadSizeProblem } from "./library.js";

const el = (id) => document.getElementById(id);

// Confirm destructive forms (data-confirm="question").
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
  });
}

// Refuse an oversized selection before sending it (the server refuses it too).
const upload = el("upload-form");
if (upload) {
  const input = upload.querySelector("input[type=file]"), warning = el("size-warning");
  const check = () => {
    const max = parseInt(upload.getAttribute("data-max-bytes"), 10);
    const problem = uploadSizeProblem(Array.from(input.files || [], (f) => f.size), max);
    warning.hidden = !problem; warning.textContent = problem;
    return !problem;
  };
  input.addEventListener("change", check);
  upload.addEventListener("submit", (event) => { if (!check()) { event.preventDefault(); } });
}

// Job page: poll the job's status; a reload simply starts polling again.
const job = el("job");
if (job) {
  const url = job.getAttribute("data-status-url");
  const cell = (row, text, href) => {
    const td = document.createElement("td"), link = safeLink(href, window.location.href);
    if (link) {
      const a = document.createElement("a"); a.href = link; a.textContent = text; td.append(a);
    } else {
      td.textContent = text;
    }
    row.append(td);
  };
  const render = (s) => {
    el("job-progress").value = s.percent;
    el("job-progress").textContent = s.percent + "%";
    el("job-phase").textContent = s.phase;
    el("job-counts").textContent = jobCounts(s);
    el("job-message").textContent = s.message || "";
    const body = el("job-items").querySelector("tbody");
    body.textContent = "";
    for (const item of s.items) {
      const row = document.createElement("tr");
      row.className = "outcome-" + item.outcome;
      cell(row, item.file || "");
      cell(row, item.document || "", item.guideline_id ? `/guidelines/${item.guideline_id}/` : null);
      cell(row, item.outcome);
      cell(row, item.reason ? item.reason : String(item.passages || 0));
      body.append(row);
    }
    if (s.final) {
      el("job-done").hidden = false;
      el("job-index").textContent = s.index_version ? `Index v${s.index_version} is live.` : "";
    }
  };
  const poll = () => {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then((s) => { render(s); if (!s.final) { window.setTimeout(poll, 1000); } })
      .catch(() => {
        el("job-message").textContent = "Lost contact with the server; retrying…";
        window.setTimeout(poll, 3000);
      });
  };
  poll();
}
