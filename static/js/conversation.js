// The conversation on the ask page: earlier turns shown read-only, the state of the follow-up
// box, and the thread API. The builders take the document and their callbacks as arguments, so
// `node --test tests/js/` runs them with a minimal fake DOM.
import { renderAnswer, weakRanges } from "./render.js";

// One verbatim quote of "What the guidelines say", with its source line.
export function quoteItem(e, doc = document) {
  const li = doc.createElement("li"), quote = doc.createElement("blockquote");
  const cite = doc.createElement("div"), g = e.guideline || {};
  // The guideline's own markdown emphasis (**bold**, lists) as the page's renderer shows it;
  // built as DOM nodes, never parsed as HTML.
  renderAnswer(quote, e.text || "");
  cite.className = "quote-source muted";
  cite.textContent = `[S${e.source}] ${[g.title, g.organisation, g.year].filter(Boolean).join(" · ")}` +
    (e.section ? ` — ${e.section}` : "");
  li.append(quote, cite);
  return li;
}

// "[S2] Title — Section" as a button that opens the source.
export function sourceButton(c, onOpen, doc = document) {
  const b = doc.createElement("button");
  b.type = "button"; b.className = "link source-link";
  b.textContent = `[S${c.number}] ${c.passage.guideline.title} — ${c.passage.section}`;
  b.addEventListener("click", () => onOpen(c));
  return b;
}

// What an earlier turn says about itself under its answer: flagged statements, feedback given.
export function turnNotes(a, FLAG) {
  const flagged = (a.flags || []).filter((f) => f.kind === FLAG.WEAK_SUPPORT || f.kind === FLAG.UNCITED_SENTENCE).length;
  const fb = a.feedback, notes = [];
  if (flagged) { notes.push(`${flagged} statement${flagged === 1 ? "" : "s"} flagged for checking`); }
  if (fb) { notes.push(fb.helpful ? "You marked it helpful" : `You marked it not helpful (${fb.category})`); }
  return notes;
}

// The follow-up box under an answer: shown once the answer is final, closed at the turn limit.
export function followUpState(a, { maxTurns, final }) {
  const full = (a.turn || 1) >= maxTurns;
  return {
    hidden: !final.includes(a.status),
    disabled: full,
    note: full ? `This conversation has reached its limit of ${maxTurns} questions; start a new question.` : "",
  };
}

// An earlier turn, read-only: its question, what the guidelines said, the summary with its own
// numbered sources (numbers restart in each answer), the checks and the feedback given.
export function renderTurn(a, { flag, citeButton, onOpenSource, doc = document }) {
  const li = doc.createElement("li"), head = doc.createElement("p");
  const badge = doc.createElement("span");
  li.className = "turn"; li.dataset.answerId = a.id;
  head.className = "turn-question"; head.textContent = `Q${a.turn || ""}: ${a.question} `;
  badge.className = "badge status-" + a.status; badge.textContent = a.status;
  head.append(badge); li.append(head);
  if (a.message) {  // a refusal, a failure, or why a complete answer has no summary
    const m = doc.createElement("div");
    m.className = "alert " + (["refused", "complete"].includes(a.status) ? "warning" : "error");
    m.textContent = a.message;
    li.append(m);
  }
  if ((a.evidence || []).length) {
    const ol = doc.createElement("ol"); ol.className = "quotes-list";
    for (const e of a.evidence) { ol.append(quoteItem(e, doc)); }
    li.append(ol);
  }
  const byNumber = new Map((a.citations || []).map((c) => [c.number, c]));
  if (a.text) {
    const div = doc.createElement("div"); div.className = "answer-text";
    renderAnswer(div, a.text, {
      weak: a.status === "complete" ? weakRanges(a.text, a.flags || [], flag) : [],
      citation: (n) => citeButton(byNumber.get(n)),
    });
    li.append(div);
  }
  if ((a.citations || []).length) {
    const ol = doc.createElement("ol"); ol.className = "turn-sources";
    for (const c of a.citations) {
      const item = doc.createElement("li");
      item.append(sourceButton(c, onOpenSource, doc)); ol.append(item);
    }
    li.append(ol);
  }
  const notes = turnNotes(a, flag);
  if (notes.length) {
    const p = doc.createElement("p"); p.className = "muted turn-notes"; p.textContent = notes.join(" · ");
    li.append(p);
  }
  return li;
}

// Every turn of the conversation ``id`` belongs to, first turn first (the user's own only).
export async function fetchThread(id) {
  const r = await fetch(`/api/answers/${id}/thread/`, { credentials: "same-origin" });
  if (!r.ok) { throw new Error(`HTTP ${r.status}`); }
  return (await r.json()).turns;
}
