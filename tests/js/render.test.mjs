// The answer renderer (static/js/render.js) without a browser: `node --test tests/js`
// (run by `make test` and `make test-fast`).
import assert from "node:assert/strict";
import { test } from "node:test";

import { parseAnswer, renderAnswer, weakRanges } from "../../static/js/render.js";

const FLAG = { WEAK_SUPPORT: "weak_support", UNCITED_SENTENCE: "uncited_sentence", INVALID_CITATION: "invalid_citation" };

// Just enough of a DOM for renderAnswer: elements with children, attributes and text.
class Node_ {
  constructor(doc, tag, text = null) {
    Object.assign(this, { ownerDocument: doc, tagName: tag, text, children: [], attributes: {}, dataset: {} });
  }
  append(...nodes) { this.children.push(...nodes); }
  setAttribute(name, value) {
    this.attributes[name] = String(value);
    if (name.startsWith("data-")) this.dataset[name.slice(5)] = String(value);
  }
  get textContent() { return this.text ?? this.children.map((c) => c.textContent).join(""); }
  // A compact serialisation: <tag attr>children</tag>, text as is.
  toString() {
    if (this.text !== null) return this.text;
    const attrs = this.tagName === "mark" ? ` ${this.attributes["aria-label"]}` : "";
    return `<${this.tagName}${attrs}>${this.children.join("")}</${this.tagName}>`;
  }
}
const doc = {
  createElement: (tag) => new Node_(doc, tag),
  createTextNode: (text) => new Node_(doc, "#text", text),
};
const render = (text, options) => {
  const root = doc.createElement("div");
  renderAnswer(root, text, options);
  return root.children.join("");
};

test("paragraphs, line breaks, bulleted and numbered lists", () => {
  const blocks = parseAnswer("First line\nsecond line\n\n- a\n- b\n1. one\n2) two\n\nEnd.");
  assert.deepEqual(blocks.map((b) => b.tag), ["p", "ul", "ol", "p"]);
  assert.equal(blocks[0].lines.length, 2);
  assert.deepEqual(blocks[1].items.map((i) => i.map((s) => s.text).join("")), ["a", "b"]);
  assert.deepEqual(blocks[2].items.map((i) => i.map((s) => s.text).join("")), ["one", "two"]);
  assert.equal(render("First line\nsecond line"), "<p>First line<br></br>second line</p>");
});

test("citation markers become what the page asks for, unknown ones stay text", () => {
  const citation = (n) => (n === 1 ? doc.createElement(`cite${n}`) : null);
  assert.equal(render("Give DOACs [S1][S7].", { citation }), "<p>Give DOACs <cite1></cite1>[S7].</p>");
  const [segments] = parseAnswer("x [S12] y")[0].lines;
  assert.deepEqual(segments.map((s) => s.cite), [null, 12, null]);
});

test("bold is an element, never markup the model wrote", () => {
  assert.equal(render("**Do not** give <b>x</b> [S1]", { citation: () => null }), "<p><strong>Do not</strong> give <b>x</b> [S1]</p>");
  const [segments] = parseAnswer("<img src=x onerror=alert(1)>")[0].lines;
  assert.equal(segments.length, 1);
  assert.equal(segments[0].text, "<img src=x onerror=alert(1)>");  // one text node, as text
});

test("flagged sentences are marked with their reason, across bold and citations", () => {
  const text = "Safe sentence [S1]. Give **10 mg** daily [S2]. Another.";
  const flags = [
    { kind: FLAG.WEAK_SUPPORT, detail: "no 10 mg in [S2]", sentence: "Give **10 mg** daily [S2]." },
    { kind: FLAG.INVALID_CITATION, detail: "[S9] does not match" },  // no sentence to mark
  ];
  const weak = weakRanges(text, flags, FLAG);
  assert.deepEqual(weak, [{ start: 20, end: 46, reason: "Weakly supported: no 10 mg in [S2]" }]);
  const html = render(text, { weak, citation: (n) => doc.createElement(`c${n}`) });
  assert.equal(
    html,
    "<p>Safe sentence <c1></c1>. <mark Give 10 mg daily . (Weakly supported: no 10 mg in [S2])>Give <strong>10 mg</strong> daily <c2></c2>.</mark> Another.</p>",
  );
});

test("an uncited sentence is marked; a flag whose sentence is not in the text is ignored", () => {
  const text = "The dose is 5 mg.\n- item";
  const weak = weakRanges(text, [
    { kind: FLAG.UNCITED_SENTENCE, detail: "The dose is 5 mg." },
    { kind: FLAG.WEAK_SUPPORT, detail: "x", sentence: "Not in the answer." },
  ], FLAG);
  assert.equal(weak.length, 1);
  assert.equal(weak[0].reason, "No citation: no source backs this sentence.");
  assert.match(render(text, { weak }), /^<p><mark The dose is 5 mg\. \(No citation/);
});
