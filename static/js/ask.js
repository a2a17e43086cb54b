// Ask page: sends questions over the websocket, renders the streamed answer, and never leaves
// the clinician with an endless spinner (watchdog + persisted-state repair on every gap).
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const form = $("ask-form"), question = $("question"), askButton = $("ask-button");
  const cancelButton = $("cancel-button"), statusEl = $("status");
  const answerEl = $("answer"), answerText = $("answer-text"), answerMessage = $("answer-message");
  const WATCHDOG_MS = 45000, GIVE_UP_MS = 600000, PENDING_KEY = "pendingAnswerId";

  let socket = null, current = null, lastSeq = 0, lastEventAt = 0, startedAt = 0;
  let retryDelay = 500, watchdog = null;

  function setStatus(text) { statusEl.textContent = text; }
  function busy(on) { askButton.disabled = on; cancelButton.hidden = !on; }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/ask/`);
    socket.onopen = () => {
      retryDelay = 500;
      const pending = current || Number(sessionStorage.getItem(PENDING_KEY)) || null;
      if (pending) { follow(pending); }
    };
    socket.onmessage = (e) => handle(JSON.parse(e.data));
    socket.onclose = (e) => {
      if (e.code === 4403) { setStatus("You are not permitted to ask questions."); busy(false); return; }
      if (current) { setStatus("Connection lost; reconnecting…"); }
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 8000);
    };
  }

  function send(msg) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      setStatus("Not connected to the server; retrying…");
      return false;
    }
    socket.send(JSON.stringify(msg));
    return true;
  }

  function follow(id) {
    current = id; lastEventAt = Date.now(); startedAt = startedAt || Date.now();
    busy(true); armWatchdog();
    send({ action: "follow", answer_id: id });
  }

  function resetAnswer(q) {
    answerEl.hidden = false; answerText.textContent = ""; answerText.classList.add("streaming");
    answerMessage.hidden = true; $("sources").hidden = true; $("basis").hidden = true; $("checks").hidden = true;
    $("answer-question").textContent = q ? "Q: " + q : "";
    lastSeq = 0;
  }

  function handle(msg) {
    lastEventAt = Date.now();
    if (msg.type === "accepted") {
      current = msg.answer_id; sessionStorage.setItem(PENDING_KEY, String(current));
      setStatus("Searching the guidelines…");
    } else if (msg.type === "chunk" && msg.answer_id === current) {
      if (msg.seq <= lastSeq) { return; }               // duplicate: already shown
      if (msg.seq !== lastSeq + 1) { answerText.dataset.gap = "1"; }  // repaired by "done"
      lastSeq = msg.seq;
      answerText.append(document.createTextNode(msg.text)); // escaped while streaming
      setStatus("Writing the answer…");
    } else if (msg.type === "snapshot" || msg.type === "done") {
      const a = msg.answer;
      if (a.id !== current) { return; }
      if (msg.type === "snapshot") {
        resetAnswer(a.question);
        answerText.textContent = a.text;
        lastSeq = a.chunks_sent || 0;
      }
      if (["complete", "refused", "failed", "cancelled"].includes(a.status)) { render(a); }
      else { setStatus("Writing the answer…"); }
    } else if (msg.type === "error") {
      if (!msg.answer_id || msg.answer_id === current) {
        setStatus("");
        showMessage(msg.message, "error");
        if (!current || msg.answer_id === current) { finishUi(); }
      }
    }
  }

  function showMessage(text, kind) {
    answerEl.hidden = false; answerMessage.hidden = false;
    answerMessage.className = "alert " + kind; answerMessage.textContent = text;
  }

  function finishUi() {
    answerText.classList.remove("streaming");
    busy(false); current = null; startedAt = 0; sessionStorage.removeItem(PENDING_KEY);
    if (watchdog) { clearInterval(watchdog); watchdog = null; }
  }

  function render(a) {
    finishUi();
    resetAnswer(a.question);
    answerText.classList.remove("streaming");
    const labels = { complete: "", refused: "No answer: insufficient evidence.", failed: "The answer failed.", cancelled: "Cancelled." };
    setStatus(labels[a.status] || "");
    if (a.status !== "complete") { showMessage(a.message, a.status === "refused" ? "warning" : "error"); }
    else if ((a.flags || []).some((f) => f.kind === "truncated")) {
      showMessage("This answer reached the length limit and may be incomplete.", "warning");
    }
    const byNumber = new Map(a.citations.map((c) => [c.number, c]));
    // Citation markers become buttons; everything else stays text (never innerHTML).
    const parts = (a.text || "").split(/(\[S\d+\])/);
    for (const part of parts) {
      const m = part.match(/^\[S(\d+)\]$/);
      const c = m ? byNumber.get(Number(m[1])) : null;
      if (c) {
        const b = document.createElement("button");
        b.type = "button"; b.className = "cite"; b.textContent = `[S${c.number}]`;
        b.setAttribute("aria-label", `Open source ${c.number}: ${c.passage.guideline.title}`);
        b.addEventListener("click", () => openEvidence(c));
        answerText.append(b);
      } else { answerText.append(document.createTextNode(part)); }
    }
    renderChecks(a);
    const list = $("source-list"); list.textContent = "";
    for (const c of a.citations) {
      const li = document.createElement("li"), b = document.createElement("button");
      const g = c.passage.guideline;
      b.type = "button"; b.className = "link source-link";
      b.textContent = `[S${c.number}] ${g.title} — ${c.passage.section}`;
      b.addEventListener("click", () => openEvidence(c));
      li.append(b);
      if (!c.cited) { const s = document.createElement("span"); s.className = "muted"; s.textContent = " (provided, not cited)"; li.append(s); }
      list.append(li);
    }
    $("sources").hidden = a.citations.length === 0;
    const basis = $("basis-list"); basis.textContent = "";
    const rows = [["Model", `${a.basis.model || "—"} ${a.basis.model_version || ""} (${a.basis.backend || "not called"})`],
      ["Index version", a.basis.index_version ?? "—"], ["Best passage score", a.basis.top_score == null ? "—" : a.basis.top_score.toFixed(3)],
      ["Asked", a.basis.asked_at], ["Finished", a.basis.finished_at || "—"]];
    for (const [k, v] of rows) { const dt = document.createElement("dt"), dd = document.createElement("dd"); dt.textContent = k; dd.textContent = String(v); basis.append(dt, dd); }
    $("basis").hidden = false;
    addHistory(a);
  }

  // Sentences the server's checks could not tie to their sources, each with the reason.
  function renderChecks(a) {
    const box = $("checks"), list = $("check-list"); list.textContent = "";
    const weak = (a.flags || []).filter((f) => f.kind === "weak_support" || f.kind === "uncited_sentence" || f.kind === "invalid_citation");
    for (const f of weak) {
      const li = document.createElement("li"), q = document.createElement("q"), r = document.createElement("span");
      q.textContent = f.kind === "weak_support" ? f.sentence : f.kind === "uncited_sentence" ? f.detail : "";
      r.className = "muted";
      r.textContent = f.kind === "weak_support" ? ` — ${f.detail}` : f.kind === "uncited_sentence" ? " — no citation" : f.detail;
      li.append(q, r); list.append(li);
    }
    box.hidden = a.status !== "complete" || weak.length === 0;
  }

  function openEvidence(c) {
    const g = c.passage.guideline, panel = $("evidence");
    $("evidence-title").textContent = g.title;
    $("evidence-meta").textContent = [g.organisation, g.year, `score ${c.score.toFixed(3)}`].filter(Boolean).join(" · ");
    $("evidence-section").textContent = "Section: " + c.passage.section;
    $("evidence-text").textContent = c.passage.text;
    const link = $("evidence-link");
    link.textContent = g.doi ? "DOI " + g.doi : (g.url || "");
    link.href = g.url || "#"; link.hidden = !g.url;
    panel.hidden = false; panel.focus();
  }

  function addHistory(a) {
    const list = $("history");
    if (list.querySelector(`[data-answer-id="${a.id}"]`)) { return; }
    const empty = $("history-empty"); if (empty) { empty.remove(); }
    const li = document.createElement("li"), b = document.createElement("button"), s = document.createElement("span");
    b.type = "button"; b.className = "link history-item"; b.dataset.answerId = a.id;
    b.textContent = a.question.length > 90 ? a.question.slice(0, 89) + "…" : a.question;
    s.className = "badge status-" + a.status; s.textContent = a.status;
    li.append(b, " ", s); list.prepend(li);
  }

  async function fetchAnswer(id) {
    const r = await fetch(`/api/answers/${id}/`, { credentials: "same-origin" });
    if (!r.ok) { throw new Error(`HTTP ${r.status}`); }
    return r.json();
  }

  function armWatchdog() {
    if (watchdog) { clearInterval(watchdog); }
    watchdog = setInterval(async () => {
      if (!current) { return; }
      const idle = Date.now() - lastEventAt;
      if (Date.now() - startedAt > GIVE_UP_MS) {
        showMessage("The answer did not complete in time. Please try again.", "error"); finishUi(); return;
      }
      if (idle < WATCHDOG_MS) { return; }
      try {
        const a = await fetchAnswer(current);
        if (["complete", "refused", "failed", "cancelled"].includes(a.status)) { render(a); }
        else { setStatus("Still waiting for the model…"); lastEventAt = Date.now(); }
      } catch (err) { setStatus("Cannot reach the server; retrying…"); }
    }, 5000);
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = question.value.trim();
    if (!q) { setStatus("Please type a question."); return; }
    if (!send({ action: "ask", question: q })) {
      showMessage("Not connected to the server, so the question was not sent. Please try again in a moment.", "error");
      return;
    }
    resetAnswer(q); startedAt = Date.now(); lastEventAt = Date.now();
    busy(true); armWatchdog(); setStatus("Sending…");
  });
  cancelButton.addEventListener("click", () => { if (current) { send({ action: "cancel", answer_id: current }); setStatus("Cancelling…"); } });
  $("evidence-close").addEventListener("click", () => { $("evidence").hidden = true; });
  $("history").addEventListener("click", async (e) => {
    const b = e.target.closest(".history-item"); if (!b) { return; }
    try { render(await fetchAnswer(Number(b.dataset.answerId))); }
    catch (err) { showMessage("Could not open that answer.", "error"); }
  });
  connect();
})();
