// The ask page's history: one entry per conversation (its first question, how many questions,
// its latest answer's status), and the search over it. Without script the search form reloads
// the page with ?q=; with it, the list is replaced in place (the answer on display and the
// websocket stay).

export function historyEntry(id, questionText, status, threadId, turns) {
  const li = document.createElement("li"), b = document.createElement("button"), s = document.createElement("span");
  b.type = "button"; b.className = "link history-item"; b.dataset.answerId = id; b.dataset.threadId = threadId || id;
  b.textContent = questionText.length > 90 ? questionText.slice(0, 89) + "…" : questionText;
  s.className = "badge status-" + status; s.textContent = status;
  li.append(b, " ");
  if (turns > 1) {
    const t = document.createElement("span"); t.className = "badge turns"; t.textContent = `${turns} questions`;
    li.append(t, " ");
  }
  li.append(s);
  return li;
}

// Search as the clinician types (300 ms after the last key) or submits; a slower, older
// search never overwrites a newer one.
export function historySearch() {
  const $ = (id) => document.getElementById(id);
  const query = $("history-q");
  let timer = null, serial = 0;

  async function search() {
    const q = query.value.trim(), mine = ++serial;
    let data;
    try {
      const r = await fetch(`/api/history/?q=${encodeURIComponent(q)}`, { credentials: "same-origin" });
      if (!r.ok) { throw new Error(`HTTP ${r.status}`); }
      data = await r.json();
    } catch (err) { $("history-summary").textContent = "Search failed; try again."; return; }
    if (mine !== serial) { return; }   // a newer search has started
    const list = $("history"), summary = $("history-summary");
    list.textContent = "";
    for (const item of data.results) { list.append(historyEntry(item.answer_id, item.question, item.status, item.thread_id, item.turns)); }
    if (!data.results.length) {
      const li = document.createElement("li"); li.id = "history-empty"; li.className = "muted";
      li.textContent = q ? "Nothing matches." : "No questions yet."; list.append(li);
    }
    summary.textContent = q ? `${data.results.length} match${data.results.length === 1 ? "" : "es"} for “${q}”` : "";
    const url = new URL(location.href);
    if (q) { url.searchParams.set("q", q); } else { url.searchParams.delete("q"); }
    history.replaceState(null, "", url);
  }

  $("history-search").addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(timer); search(); });
  query.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 300); });
  const clear = $("history-clear");
  if (clear) {
    clear.addEventListener("click", (e) => { e.preventDefault(); query.value = ""; search(); });
  }
}
