// The order of a streamed answer, without the page: chunks arrive over the websocket numbered
// (seq) within a generation attempt; they are shown in order, exactly once. One that arrives
// after a gap is held until the gap is filled, by later chunks or by a snapshot (the text the
// server saved through some chunk). A newer attempt (a lost worker's task restarted the
// answer) starts over; chunks of an older attempt are dropped. Tested with `node --test tests/js`.

export class ChunkSequence {
  constructor() { this.reset(); }

  // A new answer on display: nothing shown, first attempt.
  reset() {
    this.lastSeq = 0;   // the last chunk shown
    this.attempt = 1;   // the attempt on display
    this.held = new Map(); // chunks after a gap, by seq
  }

  // Whether a gap is open (a chunk is held for a missing one before it).
  get gap() { return this.held.size > 0; }

  // A streamed chunk. Returns {restart, texts}: restart when a newer attempt replaces what is
  // shown (clear it first), texts to append in order (none when stale, duplicate or held).
  chunk(seq, text, attempt = 1) {
    if (attempt < this.attempt) return { restart: false, texts: [] };  // a replaced attempt
    let restart = false;
    if (attempt > this.attempt) {
      this.attempt = attempt; this.lastSeq = 0; this.held.clear(); restart = true;
    }
    if (seq <= this.lastSeq) return { restart, texts: [] };             // already shown
    this.held.set(seq, text);
    return { restart, texts: this.drain() };
  }

  // The held chunks that now follow on, in order (they count as shown).
  drain() {
    const texts = [];
    while (this.held.has(this.lastSeq + 1)) {
      this.lastSeq += 1;
      texts.push(this.held.get(this.lastSeq));
      this.held.delete(this.lastSeq);
    }
    return texts;
  }

  // What to do with a snapshot of ``attempt`` saved through chunk ``seq``, given whether some
  // text is shown: "stale" (older than the screen: ignore it), "replace" (show its text, then
  // call ``restartAt``) or "keep" (the screen is ahead: keep it).
  snapshotDecision(attempt, seq, showing) {
    if (attempt < this.attempt) return "stale";
    if (attempt > this.attempt || seq >= this.lastSeq || !showing) return "replace";
    return "keep";
  }

  // The screen now shows the snapshot's text: attempt ``attempt`` through chunk ``seq``.
  restartAt(attempt, seq) {
    if (attempt > this.attempt) this.held.clear();
    this.lastSeq = seq; this.attempt = attempt;
    for (const k of [...this.held.keys()]) { if (k <= seq) this.held.delete(k); }
  }
}
