// Patient-identifier detector for the ask page (an ES module). The patterns are
// clinic_app/answers/identifiers.py's, rendered into the page as JSON (#identifier-config) and handed to
// identifierDetector, so the browser and the server match alike; the checks after matching
// (digit counts, NHS checksum, overlaps) mirror that module and tests run the same cases
// through both (tests/clinic_app/data/identifier_cases.json).
export function identifierDetector(config) {
  // "d": match indices, to find where group 1 (the identifier, not its label) starts.
  const compiled = config.patterns.map((p) => Object.assign({}, p, { regex: new RegExp(p.source, "gid") }));

  function nhsChecksumOk(digits) {
    if (!/^[0-9]{10}$/.test(digits)) { return false; }
    let total = 0;
    for (let i = 0; i < 9; i++) { total += Number(digits[i]) * (10 - i); }
    let check = 11 - (total % 11);
    if (check === 11) { check = 0; }
    return check !== 10 && check === Number(digits[9]);
  }

  function accept(p, value) {
    const digits = value.replace(/[^0-9]/g, "");
    if (p.min_digits && digits.length < p.min_digits) { return false; }
    if (p.max_digits && digits.length > p.max_digits) { return false; }
    return !(p.checksum === "nhs" && !nhsChecksumOk(digits));
  }

  // Every identifier in the text, in order of position, without overlaps: [{kind, start, end, text}].
  function find(text) {
    const found = [];
    for (const p of compiled) {
      for (const m of text.matchAll(p.regex)) {
        const [start, end] = m.indices[1];
        if (!accept(p, m[1])) { continue; }
        if (found.some((f) => start < f.end && f.start < end)) { continue; }
        found.push({ kind: p.kind, start: start, end: end, text: m[1] });
      }
    }
    return found.sort((a, b) => a.start - b.start);
  }

  // The text with each identifier replaced by its kind's placeholder ("[phone]").
  function redact(text) {
    let out = "", position = 0;
    for (const f of find(text)) {
      out += text.slice(position, f.start) + config.placeholders[f.kind];
      position = f.end;
    }
    return out + text.slice(position);
  }

  return { find, redact, labels: config.labels, placeholders: config.placeholders };
}
