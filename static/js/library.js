// The guideline library pages' pure parts (no DOM): the upload size check, which links a job's
// outcome table may carry, and the job's counters as one line. Tested by `node --test tests/js/`.

// The message that refuses a selection above the upload limit ("" when it fits, or no limit).
export function uploadSizeProblem(sizes, maxBytes) {
  const total = sizes.reduce((sum, size) => sum + size, 0);
  if (!maxBytes || total <= maxBytes) { return ""; }
  return `These files add up to ${Math.ceil(total / 1e6)} MB, above the limit of ` +
    `${Math.floor(maxBytes / 1e6)} MB. Upload fewer or smaller files.`;
}

// ``href`` resolved against ``base`` if it is an http(s) link, else null: a javascript: or
// data: URL written into a document's metadata is never made clickable.
export function safeLink(href, base) {
  if (!href) { return null; }
  try {
    const url = new URL(href, base);
    return ["http:", "https:"].includes(url.protocol) ? url.href : null;
  } catch (e) {
    return null;
  }
}

// "12 / 40 · added 10 · duplicates 1 · failed 1"
export function jobCounts(s) {
  return `${s.done} / ${s.total} · added ${s.added} · duplicates ${s.duplicates} · failed ${s.failed}`;
}
