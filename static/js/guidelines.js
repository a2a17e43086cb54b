// Guideline administration: upload size check, confirmations, live job progress.
(function () {
  "use strict";

  // Confirm destructive forms (data-confirm="question").
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  // Refuse an oversized selection before sending it (the server refuses it too).
  var upload = document.getElementById("upload-form");
  if (upload) {
    var input = upload.querySelector("input[type=file]");
    var warning = document.getElementById("size-warning");
    var check = function () {
      var max = parseInt(upload.getAttribute("data-max-bytes"), 10);
      var total = 0;
      Array.prototype.forEach.call(input.files || [], function (f) { total += f.size; });
      var tooBig = max && total > max;
      warning.hidden = !tooBig;
      warning.textContent = tooBig
        ? "These files add up to " + Math.ceil(total / 1e6) + " MB, above the limit of " +
          Math.floor(max / 1e6) + " MB. Upload fewer or smaller files."
        : "";
      return !tooBig;
    };
    input.addEventListener("change", check);
    upload.addEventListener("submit", function (event) { if (!check()) event.preventDefault(); });
  }

  // Job page: poll the job's status; a reload simply starts polling again.
  var job = document.getElementById("job");
  if (!job) return;
  var url = job.getAttribute("data-status-url");
  var el = function (id) { return document.getElementById(id); };
  var cell = function (row, text, href) {
    var td = document.createElement("td");
    var web = false;
    try {
      // Only http(s) links (the job's own pages are relative: resolved against this page).
      web = href ? ["http:", "https:"].indexOf(new URL(href, window.location.href).protocol) >= 0 : false;
    } catch (e) {
      web = false;
    }
    if (web) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
  };
  var render = function (s) {
    el("job-progress").value = s.percent;
    el("job-progress").textContent = s.percent + "%";
    el("job-phase").textContent = s.phase;
    el("job-counts").textContent = s.done + " / " + s.total + " · added " + s.added +
      " · duplicates " + s.duplicates + " · failed " + s.failed;
    el("job-message").textContent = s.message || "";
    var body = el("job-items").querySelector("tbody");
    body.textContent = "";
    s.items.forEach(function (item) {
      var row = document.createElement("tr");
      row.className = "outcome-" + item.outcome;
      cell(row, item.file || "");
      cell(row, item.document || "", item.guideline_id ? "/guidelines/" + item.guideline_id + "/" : null);
      cell(row, item.outcome);
      cell(row, item.reason ? item.reason : String(item.passages || 0));
      body.appendChild(row);
    });
    if (s.final) {
      el("job-done").hidden = false;
      el("job-index").textContent = s.index_version ? "Index v" + s.index_version + " is live." : "";
    }
  };
  var poll = function () {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (s) { render(s); if (!s.final) window.setTimeout(poll, 1000); })
      .catch(function () {
        el("job-message").textContent = "Lost contact with the server; retrying…";
        window.setTimeout(poll, 3000);
      });
  };
  poll();
})();
