// The answer renderer, shared by the ask page and the auditor's event page, so that an auditor
// sees an answer as the clinician saw it: paragraphs, bulleted and numbered lists, **bold**,
// citation markers and the sentences the server's checks flagged. Nothing the model wrote is
// ever parsed as HTML: the text is cut into segments (parseAnswer, pure, tested with
// `node --test static/js/tests`) and then built as DOM nodes (renderAnswer).

const ITEM = /^\s*([-*•]|\d{1,3}[.)])\s+/;
const BOLD = /(\*\*[^*\n]+\*\*)/;
// Normalised citation markers only: the server rewrites every group it accepts to [S<n>]
// (inference/markers.py).
const MARKER = /(\[S\d+\])/;

// Where each flagged sentence is in ``text``: [{start, end, reason}], earliest first.
// ``FLAG`` is the server's flag kinds (inference.types.FlagKind), as the page received them.
export function weakRanges(text, flags, FLAG) {
  const reasons = {
    [FLAG.WEAK_SUPPORT]: (f) => `Weakly supported: ${f.detail}`,
    [FLAG.UNCITED_SENTENCE]: () => "No citation: no source backs this sentence.",
  };
  const ranges = [];
  for (const f of flags || []) {
    const sentence = f.kind === FLAG.WEAK_SUPPORT ? f.sentence : f.kind === FLAG.UNCITED_SENTENCE ? f.detail : "";
    if (!sentence || !reasons[f.kind]) continue;
    const start = text.indexOf(sentence);
    if (start < 0) continue;
    ranges.push({ start, end: start + sentence.length, reason: reasons[f.kind](f) });
  }
  return ranges.sort((x, y) => x.start - y.start);
}

// text -> blocks: {tag: "p", lines: [segments]} or {tag: "ul"|"ol", items: [segments]}.
// A segment is {text, cite (source number or null), strong (group id or null), mark (group id
// or null), reason (the flag's reason or null)}; consecutive segments with the same strong or
// mark id belong in one element.
export function parseAnswer(text, weak = []) {
  const blocks = [];
  const ids = { next: 0 };
  let offset = 0, list = null, para = null;
  for (const line of text.split("\n")) {
    const start = offset;
    offset += line.length + 1;
    if (!line.trim()) { list = null; para = null; continue; }
    const item = line.match(ITEM);
    if (item) {
      const tag = /\d/.test(item[1]) ? "ol" : "ul";
      if (!list || list.tag !== tag) { list = { tag, items: [] }; blocks.push(list); }
      para = null;
      list.items.push(inline(text, start + item[0].length, start + line.length, weak, ids));
    } else {
      list = null;
      if (!para) { para = { tag: "p", lines: [] }; blocks.push(para); }
      para.lines.push(inline(text, start, start + line.length, weak, ids));
    }
  }
  return blocks;
}

// text[from, to) as segments, the flagged ranges inside it marked.
function inline(text, from, to, weak, ids) {
  const out = [];
  let at = from;
  for (const r of weak) {
    const s = Math.max(r.start, at), e = Math.min(r.end, to);
    if (e <= s) continue;
    styled(text.slice(at, s), null, null, out, ids);
    styled(text.slice(s, e), ids.next++, r.reason, out, ids);
    at = e;
  }
  styled(text.slice(at, to), null, null, out, ids);
  return out;
}

function styled(piece, mark, reason, out, ids) {
  for (const part of piece.split(BOLD)) {
    const bold = /^\*\*[^*\n]+\*\*$/.test(part);
    const strong = bold ? ids.next++ : null;
    for (const bit of (bold ? part.slice(2, -2) : part).split(MARKER)) {
      if (!bit) continue;
      const m = bit.match(/^\[S(\d+)\]$/);
      out.push({ text: bit, cite: m ? Number(m[1]) : null, strong, mark, reason });
    }
  }
}

// Build ``text`` into ``parent``. ``citation(number)`` returns the node that stands for a
// marker (a button that opens the source, say) or null to keep the marker as text.
export function renderAnswer(parent, text, { weak = [], citation = () => null } = {}) {
  const doc = parent.ownerDocument;
  for (const block of parseAnswer(text, weak)) {
    const el = doc.createElement(block.tag);
    if (block.tag === "p") {
      block.lines.forEach((segments, i) => {
        if (i) el.append(doc.createElement("br"));
        appendSegments(el, segments, citation);
      });
    } else {
      for (const segments of block.items) {
        const li = doc.createElement("li");
        appendSegments(li, segments, citation);
        el.append(li);
      }
    }
    parent.append(el);
  }
}

function appendSegments(parent, segments, citation) {
  const doc = parent.ownerDocument;
  let mark = null, markId = null, strong = null, strongId = null;
  const closeMark = () => {
    if (mark) mark.setAttribute("aria-label", `${mark.textContent} (${mark.dataset.reason})`);
  };
  for (const s of segments) {
    if (s.mark !== markId) {
      closeMark();
      markId = s.mark;
      mark = null;
      strong = null; strongId = null;
      if (s.mark !== null) {
        mark = doc.createElement("mark");
        mark.className = "weak"; mark.tabIndex = 0;
        mark.title = s.reason; mark.setAttribute("data-reason", s.reason);
        parent.append(mark);
      }
    }
    const host = mark || parent;
    if (s.strong !== strongId) {
      strongId = s.strong;
      strong = s.strong === null ? null : doc.createElement("strong");
      if (strong) host.append(strong);
    }
    const node = s.cite !== null ? citation(s.cite) : null;
    (strong || host).append(node || doc.createTextNode(s.text));
  }
  closeMark();
}
