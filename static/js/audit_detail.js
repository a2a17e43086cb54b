// The auditor's event page: each answer rendered by the ask page's own renderer (render.js),
// with the same flagged sentences marked, so the auditor reads what the clinician read. The
// server's plain text stays in place if this script does not run.
import { renderAnswer, weakRanges } from "./render.js";

const answers = JSON.parse(document.getElementById("audit-answers").textContent);
const FLAG = JSON.parse(document.getElementById("flag-kinds").textContent);

for (const box of document.querySelectorAll(".answer-text[data-answer-id]")) {
  const a = answers[box.dataset.answerId];
  if (!a || !a.text) continue;
  const linked = box.dataset.sources !== undefined;
  box.textContent = "";
  renderAnswer(box, a.text, {
    weak: a.status === "complete" ? weakRanges(a.text, a.flags, FLAG) : [],
    // Markers of this answer link to its sources listed below; an earlier turn's stay text.
    citation: (n) => {
      const target = linked ? document.getElementById(`audit-source-${n}`) : null;
      if (!target) return null;
      const link = document.createElement("a");
      link.className = "cite"; link.href = `#${target.id}`; link.textContent = `[S${n}]`;
      link.setAttribute("aria-label", `Source ${n}, listed below`);
      return link;
    },
  });
  box.dataset.rendered = "true";
}

// The quotes ("What the guidelines say") as the ask page renders them: the guideline's own
// **bold** and lists, as DOM nodes.
for (const quote of document.querySelectorAll("blockquote.quote-text")) {
  const text = quote.textContent;
  quote.textContent = "";
  renderAnswer(quote, text);
  quote.dataset.rendered = "true";
}
