// The conversation's parts (static/js/conversation.js) and the library pages' pure helpers
// (static/js/library.js), without a browser: `node --test tests/js`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { followUpState, quoteItem, renderTurn, sourceButton, turnNotes } from "../../static/js/conversation.js";
import { jobCounts, safeLink, uploadSizeProblem } from "../../static/js/library.js";

const FLAG = { WEAK_SUPPORT: "weak_support", UNCITED_SENTENCE: "uncited_sentence", INVALID_CITATION: "invalid_citation" };
const FINAL = ["complete", "refused", "failed", "cancelled"];

// Enough of a DOM for the builders: elements with children, classes, data, text and listeners.
class El {
  constructor(doc, tag, text = null) {
    Object.assign(this, { ownerDocument: doc, tagName: tag, text, children: [], dataset: {}, listeners: {}, attributes: {} });
    this.className = "";
  }
  append(...nodes) { this.children.push(...nodes); }
  setAttribute(name, value) { this.attributes[name] = String(value); }
  addEventListener(type, fn) { this.listeners[type] = fn; }
  set textContent(value) { this.children = [new El(this.ownerDocument, "#text", String(value))]; }
  get textContent() { return this.text ?? this.children.map((c) => c.textContent).join(""); }
  find(predicate) {
    if (predicate(this)) { return this; }
    for (const c of this.children) { const hit = c.find ? c.find(predicate) : null; if (hit) { return hit; } }
    return null;
  }
}
const doc = { createElement: (tag) => new El(doc, tag), createTextNode: (text) => new El(doc, "#text", text) };
const byClass = (root, name) => root.find((e) => (e.className || "").split(" ").includes(name));

const citation = (number, title = "AF guideline") => ({
  number, score: 0.8, cited: true,
  passage: { section: "Anticoagulation", text: "…", guideline: { title, organisation: "ACC", year: 2023 } },
});

test("a quote names its source, guideline, organisation, year and section, as text", () => {
  const li = quoteItem({ source: 2, text: "<b>Offer</b> a DOAC.", section: "4.1", guideline: { title: "AF", organisation: "ACC", year: 2023 } }, doc);
  const [quote, cite] = li.children;
  assert.equal(quote.textContent, "<b>Offer</b> a DOAC.");
  assert.equal(cite.textContent, "[S2] AF · ACC · 2023 — 4.1");
});

test("a quote shows the guideline's own bold as bold, without the asterisks", () => {
  const li = quoteItem({ source: 1, text: "**Tetanus prophylaxis** is mandatory:", guideline: { title: "Burns" } }, doc);
  const [quote] = li.children;
  assert.equal(quote.textContent, "Tetanus prophylaxis is mandatory:");
  assert.equal(quote.find((e) => e.tagName === "strong").textContent, "Tetanus prophylaxis");
});

test("a source button opens its own source", () => {
  const opened = [];
  const b = sourceButton(citation(3), (c) => opened.push(c.number), doc);
  assert.equal(b.textContent, "[S3] AF guideline — Anticoagulation");
  b.listeners.click();
  assert.deepEqual(opened, [3]);
});

test("an earlier turn shows its question, status, quotes, summary, sources and notes", () => {
  const a = {
    id: 7, turn: 1, status: "complete", question: "DOAC in AF?", message: "",
    evidence: [{ source: 1, text: "Offer a DOAC.", guideline: { title: "AF" } }],
    text: "Offer a DOAC [S1]. Unsupported claim.",
    citations: [citation(1)],
    flags: [{ kind: "uncited_sentence", detail: "Unsupported claim." }],
    feedback: { helpful: false, category: "incomplete" },
  };
  const li = renderTurn(a, { flag: FLAG, citeButton: (c) => (c ? doc.createElement(`cite-${c.number}`) : null), onOpenSource: () => {}, doc });
  assert.equal(li.dataset.answerId, 7);
  assert.equal(byClass(li, "turn-question").textContent, "Q1: DOAC in AF? complete");
  assert.equal(byClass(li, "quotes-list").children.length, 1);
  assert.ok(byClass(li, "answer-text").find((e) => e.tagName === "cite-1"), "markers become the page's buttons");
  assert.equal(byClass(li, "turn-sources").children.length, 1);
  assert.equal(byClass(li, "turn-notes").textContent, "1 statement flagged for checking · You marked it not helpful (incomplete)");
});

test("a refused earlier turn shows its message and no summary", () => {
  const a = { id: 8, turn: 2, status: "refused", question: "Dose of X?", message: "No sufficiently relevant passage.", citations: [], flags: [] };
  const li = renderTurn(a, { flag: FLAG, citeButton: () => null, onOpenSource: () => {}, doc });
  assert.equal(byClass(li, "alert").textContent, "No sufficiently relevant passage.");
  assert.equal(byClass(li, "warning").className, "alert warning");
  assert.equal(byClass(li, "answer-text"), null);
});

test("an earlier turn with quotes but no summary says why, as a warning", () => {
  const a = {
    id: 9, turn: 1, status: "complete", question: "Dental prophylaxis?", text: "",
    message: "No summary was written: the guideline passages found do not mention extraction and prophylaxis.",
    evidence: [{ source: 1, text: "Prosthetic valve IE needs 6 weeks.", guideline: { title: "IE" } }],
    citations: [citation(1)], flags: [{ kind: "summary_skipped", detail: "extraction and prophylaxis" }],
  };
  const li = renderTurn(a, { flag: FLAG, citeButton: () => null, onOpenSource: () => {}, doc });
  assert.match(byClass(li, "alert").textContent, /^No summary was written/);
  assert.equal(byClass(li, "alert").className, "alert warning");
  assert.equal(byClass(li, "quotes-list").children.length, 1);
  assert.equal(byClass(li, "answer-text"), null);
});

test("a failed earlier turn's message is an error", () => {
  const a = { id: 10, turn: 1, status: "failed", question: "Q?", message: "The model is down.", citations: [], flags: [] };
  const li = renderTurn(a, { flag: FLAG, citeButton: () => null, onOpenSource: () => {}, doc });
  assert.equal(byClass(li, "alert").className, "alert error");
});

test("turn notes count flagged statements and the feedback given", () => {
  const flags = [{ kind: "weak_support" }, { kind: "uncited_sentence" }, { kind: "invalid_citation" }];
  assert.deepEqual(turnNotes({ flags, feedback: { helpful: true } }, FLAG), ["2 statements flagged for checking", "You marked it helpful"]);
  assert.deepEqual(turnNotes({}, FLAG), []);
});

test("the follow-up box opens once an answer is final and closes at the turn limit", () => {
  assert.deepEqual(followUpState({ turn: 1, status: "streaming" }, { maxTurns: 3, final: FINAL }), { hidden: true, disabled: false, note: "" });
  assert.deepEqual(followUpState({ turn: 2, status: "refused" }, { maxTurns: 3, final: FINAL }), { hidden: false, disabled: false, note: "" });
  const full = followUpState({ turn: 3, status: "complete" }, { maxTurns: 3, final: FINAL });
  assert.equal(full.disabled, true);
  assert.match(full.note, /limit of 3 questions/);
});

test("an upload above the limit is refused with both sizes; no limit or a fit passes", () => {
  assert.equal(uploadSizeProblem([3e6, 2.5e6], 5e6), "These files add up to 6 MB, above the limit of 5 MB. Upload fewer or smaller files.");
  assert.equal(uploadSizeProblem([3e6, 2e6], 5e6), "");
  assert.equal(uploadSizeProblem([9e9], NaN), "");
});

test("only http(s) links are made clickable in a job's outcome table", () => {
  assert.equal(safeLink("/guidelines/4/", "https://clinic.example/guidelines/jobs/1/"), "https://clinic.example/guidelines/4/");
  assert.equal(safeLink("javascript:alert(1)", "https://clinic.example/"), null);
  assert.equal(safeLink("data:text/html,x", "https://clinic.example/"), null);
  assert.equal(safeLink(null, "https://clinic.example/"), null);
  assert.equal(jobCounts({ done: 3, total: 9, added: 2, duplicates: 1, failed: 0 }), "3 / 9 · added 2 · duplicates 1 · failed 0");
});
