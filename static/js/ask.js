// Ask page: sends questions over the websocket, renders the streamed answer, and never leaves
// the clinician with an endless spinner (watchdog + persisted-state repair on every gap).
import { fetchThread, followUpState, quoteItem, renderTurn, sourceButton } from "./conversation.js";
import { feedbackBox } from "./feedback.js";
import { historyEntry, historySearch } from "./history.js";
import { identifierDetector } from "./identifiers.js";
import { renderAnswer, weakRanges } from "./render.js";
import { ChunkSequence } from "./stream.js";

(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const form = $("ask-form"), question = $("question"), askButton = $("ask-button");
  const cancelButton = $("cancel-button"), statusEl = $("status");
  const answerEl = $("answer"), answerText = $("answer-text"), answerMessage = $("answer-message");
  const WATCHDOG_MS = 45000, GIVE_UP_MS = 600000, PENDING_KEY = "pendingAnswerId";

  let socket = null, current = null, lastEventAt = 0, startedAt = 0;
  let retryDelay = 500, watchdog = null, repairTimer = null;
  const chunks = new ChunkSequence(); // the order of the answer streaming (stream.js)
  const REPAIR_MS = 400;     // a little over the server's checkpoint interval
  let shown = null;          // the answer on display (for feedback)
  let threadTurns = [];      // the earlier answers of the conversation on display, oldest first
  let pendingFollowUp = null; // a follow-up sent and not yet accepted: {parent, question}
  const FINAL = ["complete", "refused", "failed", "cancelled"];
  // Flag kinds (inference.types.FlagKind), handed over by the page: one spelling, the server's.
  const FLAG = JSON.parse($("flag-kinds").textContent);

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
      // Signed out, expired or password changed: reconnecting cannot succeed until sign-in.
      if (e.code === 4401) { setStatus("Your session has ended; sign in again."); busy(false); return; }
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

  // Chunks are shown in sequence order. One that arrives after a gap is held, and the page asks
  // for the saved state (a snapshot: the text through some chunk) until the gap is filled.
  function show(texts) {
    for (const t of texts) { answerText.append(document.createTextNode(t)); } // escaped while streaming
    if (chunks.gap) { answerText.dataset.gap = "1"; requestRepair(); }
    else { delete answerText.dataset.gap; }
  }

  function requestRepair() {
    if (repairTimer || !current) { return; }
    repairTimer = setTimeout(() => {
      repairTimer = null;
      if (current && chunks.gap) { send({ action: "follow", answer_id: current }); }
    }, REPAIR_MS);
  }

  function applySnapshot(a) {
    const attempt = a.attempts || 1, seq = a.chunks_sent || 0;
    const decision = chunks.snapshotDecision(attempt, seq, answerText.textContent !== "");
    if (decision === "stale") { return; }               // older than what is on screen
    if (decision === "replace") {
      const wasStreaming = answerText.textContent !== "" || chunks.lastSeq > 0;
      if (!wasStreaming) { resetAnswer(a.question); }
      renderQuotes(a.evidence);
      answerText.textContent = a.text;
      chunks.restartAt(attempt, seq);
    }
    show(chunks.drain());
  }

  // "What the guidelines say": the sources' own sentences, shown before the model writes.
  function renderQuotes(items) {
    const list = $("quotes-list"); list.textContent = "";
    for (const e of items || []) { list.append(quoteItem(e)); }
    const any = list.childElementCount > 0;
    $("quotes").hidden = !any; $("summary-heading").hidden = !any;
  }

  // A summary the checks found mostly unsupported (or only markers) is folded away: the quotes
  // above are what to rely on; the summary stays one click away.
  function renderWithheld(a) {
    const flag = (a.flags || []).find((f) => f.kind === FLAG.SUMMARY_WITHHELD);
    $("summary-withheld").hidden = !flag;
    $("summary-withheld-reason").textContent = flag ? `(${flag.detail})` : "";
    $("summary-show").setAttribute("aria-expanded", "false"); $("summary-show").hidden = false;
    answerText.hidden = !!flag;
  }

  function resetAnswer(q) {
    answerEl.hidden = false; answerText.textContent = ""; answerText.classList.add("streaming");
    answerText.hidden = false; $("summary-withheld").hidden = true;
    renderQuotes([]);
    answerMessage.hidden = true; $("sources").hidden = true; $("basis").hidden = true; $("checks").hidden = true;
    $("feedback").hidden = true; shown = null; followUpForm.hidden = true;
    $("answer-question").textContent = q ? "Q: " + q : "";
    chunks.reset();
  }

  $("summary-show").addEventListener("click", () => {
    answerText.hidden = false; $("summary-show").setAttribute("aria-expanded", "true");
    $("summary-show").hidden = true;
  });

  function handle(msg) {
    lastEventAt = Date.now();
    if (msg.type === "accepted") {
      if (pendingFollowUp && msg.follow_up_of === pendingFollowUp.parent) {
        // The answer on display becomes an earlier turn; the follow-up's answer streams below.
        if (shown) { threadTurns.push(shown); }
        renderThread();
        followUp.value = ""; $("follow-up-status").textContent = "";
        resetAnswer(msg.question); startedAt = Date.now(); armWatchdog();
        pendingFollowUp = null;
      }
      current = msg.answer_id; sessionStorage.setItem(PENDING_KEY, String(current));
      setStatus("Searching the guidelines…");
    } else if (msg.type === "chunk" && msg.answer_id === current) {
      const attempt = msg.attempt || 1;
      if (attempt < chunks.attempt || (attempt === chunks.attempt && msg.seq <= chunks.lastSeq)) {
        return;                                         // a replaced attempt's, or already shown
      }
      const { restart, texts } = chunks.chunk(msg.seq, msg.text, attempt);
      if (restart) { answerText.textContent = ""; }     // a lost worker's task restarted it
      show(texts);
      setStatus("Writing the answer…");
    } else if (msg.type === "evidence" && msg.answer_id === current) {
      if ((msg.attempt || 1) < chunks.attempt) { return; }
      renderQuotes(msg.evidence);
      setStatus("Writing the summary…");
    } else if (msg.type === "snapshot" || msg.type === "done") {
      const a = msg.answer;
      if (a.id !== current) { return; }
      if (msg.type === "snapshot") { applySnapshot(a); ensureThread(a); }
      if (FINAL.includes(a.status)) { render(a); }
      else { setStatus("Writing the answer…"); }
    } else if (msg.type === "error") {
      if (pendingFollowUp && (msg.follow_up_of === pendingFollowUp.parent || msg.answer_id === pendingFollowUp.parent || !msg.answer_id)) {
        // The follow-up was not accepted: the conversation on display stays as it was.
        const note = $("follow-up-status");
        note.className = "error-text"; note.textContent = msg.message;
        pendingFollowUp = null; busy(false);
        return;
      }
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
    // A question stopped by the safety gate says so; for self-harm the message is one of support.
    // One the library does not cover names what is missing.
    const gate = (a.flags || []).find((f) => f.kind === FLAG.SAFETY_GATE);
    const uncovered = (a.flags || []).find((f) => f.kind === FLAG.NOT_COVERED);
    const refused = gate ? (gate.detail === "self_harm" ? "Help is available." : "Not answered: the request was refused by the safety check.")
      : uncovered ? `Not answered: the guideline library does not cover ${uncovered.detail}.`
        : "No answer: insufficient evidence.";
    const labels = { complete: "", refused, failed: "The answer failed.", cancelled: "Cancelled." };
    setStatus(labels[a.status] || "");
    // The passages are about a nearby topic: their sentences are shown, no summary was written.
    const skipped = (a.flags || []).some((f) => f.kind === FLAG.SUMMARY_SKIPPED);
    if (a.status !== "complete") {
      showMessage(a.message, gate && gate.detail === "self_harm" ? "support" : a.status === "refused" ? "warning" : "error");
    }
    else if (skipped) { showMessage(a.message, "warning"); }
    else if ((a.flags || []).some((f) => f.kind === FLAG.TRUNCATED)) {
      showMessage("This answer reached the length limit and may be incomplete.", "warning");
    }
    const byNumber = new Map(a.citations.map((c) => [c.number, c]));
    const text = a.text || "";
    const weak = a.status === "complete" ? weakRanges(text, a.flags || [], FLAG) : [];
    // A safe subset of Markdown, built as DOM nodes; flagged sentences are marked, with the
    // reason on hover and on keyboard focus.
    renderAnswer(answerText, text, { weak, citation: (n) => citeButton(byNumber.get(n)) });
    renderQuotes(a.evidence);
    if (skipped) { $("summary-heading").hidden = true; }
    renderWithheld(a);
    renderChecks(a);
    const list = $("source-list"); list.textContent = "";
    for (const c of a.citations) {
      const li = document.createElement("li");
      li.append(sourceButton(c, openEvidence));
      if (!c.cited) { const s = document.createElement("span"); s.className = "muted"; s.textContent = " (provided, not cited)"; li.append(s); }
      list.append(li);
    }
    $("sources").hidden = a.citations.length === 0;
    const basis = $("basis-list"); basis.textContent = "";
    const rows = [["Model", `${a.basis.model || "—"} ${a.basis.model_version || ""} (${a.basis.backend || "not called"})`],
      ["Index version", a.basis.index_version ?? "—"], ["Best passage score", a.basis.top_score == null ? "—" : a.basis.top_score.toFixed(3)],
      ["Asked", a.basis.asked_at], ["Finished", a.basis.finished_at || "—"]];
    for (const [k, v] of rows) { const dt = document.createElement("dt"), dd = document.createElement("dd"); dt.textContent = k; dd.textContent = String(v ?? "—"); basis.append(dt, dd); }
    $("basis").hidden = false;
    renderFeedback(a);
    addHistory(a);
    showFollowUp(a);
  }

  // ------------------------------------------------------------------ the conversation
  const followUpForm = $("follow-up-form"), followUp = $("follow-up");
  const MAX_TURNS = Number(followUpForm.dataset.maxTurns) || 8;

  function renderThread() {
    const list = $("thread-turns"); list.textContent = "";
    for (const a of threadTurns) {
      list.append(renderTurn(a, { flag: FLAG, citeButton, onOpenSource: openEvidence }));
    }
    $("thread").hidden = threadTurns.length === 0;
  }

  // The follow-up box under a finished answer, unless the conversation is full.
  function showFollowUp(a) {
    const state = followUpState(a, { maxTurns: MAX_TURNS, final: FINAL });
    followUpForm.hidden = state.hidden;
    followUp.disabled = state.disabled; $("follow-up-button").disabled = state.disabled;
    const note = $("follow-up-status"); note.className = "muted"; note.textContent = state.note;
  }

  // After a reload in a conversation: the earlier turns come from the server.
  async function ensureThread(a) {
    if ((a.turn || 1) <= 1 || threadTurns.length === a.turn - 1) { return; }
    try {
      const turns = await fetchThread(a.id);
      if (current !== a.id && !(shown && shown.id === a.id)) { return; }
      threadTurns = turns.filter((t) => t.turn < a.turn); renderThread();
    } catch (err) { setStatus("Could not load the earlier questions of this conversation."); }
  }

  // Reopen a conversation from the history: every turn, the latest one in full.
  async function openThread(id) {
    const turns = await fetchThread(id);
    const latest = turns[turns.length - 1];
    threadTurns = turns.slice(0, -1); renderThread();
    if (FINAL.includes(latest.status)) { render(latest); }
    else { resetAnswer(latest.question); follow(latest.id); }
  }

  function newQuestion() {
    threadTurns = []; renderThread(); pendingFollowUp = null;
    answerEl.hidden = true; followUpForm.hidden = true; shown = null; setStatus("");
    question.value = ""; question.focus();
  }

  function sendFollowUp(q) {
    const parent = shown ? shown.id : null;
    if (!parent) { return; }
    if (!send({ action: "ask", question: q, follow_up_of: parent })) {
      $("follow-up-status").textContent = "Not connected to the server, so the follow-up was not sent. Please try again in a moment.";
      return;
    }
    pendingFollowUp = { parent, question: q };
    const note = $("follow-up-status"); note.className = "muted"; note.textContent = "Sending…";
    busy(true);
  }

  // ------------------------------------------------------------------ feedback on the answer
  const feedback = feedbackBox(() => shown);
  function renderFeedback(a) { shown = a; feedback.render(a); }

  // A citation marker as a button that opens its source (null: no such source, kept as text).
  function citeButton(c) {
    if (!c) return null;
    const b = document.createElement("button");
    b.type = "button"; b.className = "cite"; b.textContent = `[S${c.number}]`;
    b.setAttribute("aria-label", `Open source ${c.number}: ${c.passage.guideline.title}`);
    b.addEventListener("click", () => openEvidence(c));
    return b;
  }

  function renderChecks(a) {
    const box = $("checks"), list = $("check-list"); list.textContent = "";
    const weak = (a.flags || []).filter((f) => f.kind === FLAG.WEAK_SUPPORT || f.kind === FLAG.UNCITED_SENTENCE || f.kind === FLAG.INVALID_CITATION);
    for (const f of weak) {
      const li = document.createElement("li"), q = document.createElement("q"), r = document.createElement("span");
      q.textContent = f.kind === FLAG.WEAK_SUPPORT ? f.sentence : f.kind === FLAG.UNCITED_SENTENCE ? f.detail : "";
      r.className = "muted";
      r.textContent = f.kind === FLAG.WEAK_SUPPORT ? ` — ${f.detail}` : f.kind === FLAG.UNCITED_SENTENCE ? " — no citation" : f.detail;
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
    // A link only for http(s): a javascript: or data: URL in a source must never be clickable.
    let web = false;
    try { web = ["http:", "https:"].includes(new URL(g.url).protocol); } catch (e) { web = false; }
    link.textContent = g.doi ? "DOI " + g.doi : (g.url || "");
    if (web) { link.href = g.url; } else { link.removeAttribute("href"); }
    link.hidden = !g.url;
    panel.hidden = false; panel.focus();
  }

  function addHistory(a) {
    const list = $("history"), threadId = a.thread_id || a.id;
    const existing = list.querySelector(`[data-thread-id="${threadId}"]`);
    const first = a.turn > 1 && threadTurns.length ? threadTurns[0].question : a.question;
    if (existing) { existing.parentElement.remove(); }
    const empty = $("history-empty"); if (empty) { empty.remove(); }
    list.prepend(historyEntry(a.id, first, a.status, threadId, a.turn || 1));
  }

  historySearch();

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
        if (FINAL.includes(a.status)) { render(a); }
        else { setStatus("Still waiting for the model…"); lastEventAt = Date.now(); }
      } catch (err) { setStatus("Cannot reach the server; retrying…"); }
    }, 5000);
  }

  // -------------------------------------------------- patient identifiers, before sending
  const identifierWarning = $("identifier-warning");
  const detector = identifierDetector(JSON.parse($("identifier-config").textContent));

  let identifierTarget = null;   // the box whose text the warning is about (question or follow-up)

  function showIdentifierWarning(found, target) {
    identifierTarget = target || question;
    // Shown next to the box it is about.
    const box = identifierTarget === question ? form : followUpForm;
    box.insertBefore(identifierWarning, box.querySelector(":scope > .row"));
    const list = $("identifier-list"); list.textContent = "";
    for (const f of found) {
      const li = document.createElement("li"), mark = document.createElement("mark");
      mark.textContent = f.text;
      li.append(mark, ` — ${detector.labels[f.kind] || f.kind}`);
      list.append(li);
    }
    identifierWarning.hidden = false;
    setStatus("");
    $("identifier-remove").focus();
  }

  function hideIdentifierWarning() { identifierWarning.hidden = true; }

  function sendQuestion(q) {
    threadTurns = []; renderThread();   // the top box starts a new conversation
    if (!send({ action: "ask", question: q })) {
      showMessage("Not connected to the server, so the question was not sent. Please try again in a moment.", "error");
      return;
    }
    resetAnswer(q); startedAt = Date.now(); lastEventAt = Date.now();
    busy(true); armWatchdog(); setStatus("Sending…");
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = question.value.trim();
    if (!q) { setStatus("Please type a question."); return; }
    const found = detector ? detector.find(q) : [];
    if (found.length) { showIdentifierWarning(found); return; }
    hideIdentifierWarning();
    sendQuestion(q);
  });
  $("identifier-remove").addEventListener("click", () => {
    const target = identifierTarget || question;
    target.value = detector.redact(target.value);
    hideIdentifierWarning();
    setStatus(`Replaced with placeholders: check the question, then press ${target === question ? "Ask" : "Ask follow-up"}.`);
    target.focus();
  });
  $("identifier-send").addEventListener("click", () => {
    hideIdentifierWarning();
    const target = identifierTarget || question, q = target.value.trim();
    if (q) { if (target === question) { sendQuestion(q); } else { sendFollowUp(q); } }
  });
  followUpForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = followUp.value.trim();
    if (!q) { $("follow-up-status").textContent = "Please type a follow-up question."; return; }
    const found = detector ? detector.find(q) : [];
    if (found.length) { showIdentifierWarning(found, followUp); return; }
    hideIdentifierWarning();
    sendFollowUp(q);
  });
  followUp.addEventListener("input", hideIdentifierWarning);
  $("new-question").addEventListener("click", newQuestion);
  question.addEventListener("input", hideIdentifierWarning);
  cancelButton.addEventListener("click", () => { if (current) { send({ action: "cancel", answer_id: current }); setStatus("Cancelling…"); } });
  $("evidence-close").addEventListener("click", () => { $("evidence").hidden = true; });
  $("history").addEventListener("click", async (e) => {
    const b = e.target.closest(".history-item"); if (!b) { return; }
    try { await openThread(Number(b.dataset.answerId)); }
    catch (err) { showMessage("Could not open that conversation.", "error"); }
  });
  connect();
})();
