// The order of a streamed answer (static/js/stream.js): `node --test tests/js`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ChunkSequence } from "../../static/js/stream.js";

test("chunks in order are shown at once, duplicates never twice", () => {
  const s = new ChunkSequence();
  assert.deepEqual(s.chunk(1, "a").texts, ["a"]);
  assert.deepEqual(s.chunk(2, "b").texts, ["b"]);
  assert.deepEqual(s.chunk(2, "b").texts, []);
  assert.deepEqual(s.chunk(1, "a").texts, []);
  assert.equal(s.lastSeq, 2);
  assert.equal(s.gap, false);
});

test("a chunk after a gap is held until the gap is filled, then all follow in order", () => {
  const s = new ChunkSequence();
  s.chunk(1, "a");
  assert.deepEqual(s.chunk(3, "c").texts, []);
  assert.deepEqual(s.chunk(4, "d").texts, []);
  assert.equal(s.gap, true);
  assert.deepEqual(s.chunk(2, "b").texts, ["b", "c", "d"]);
  assert.equal(s.gap, false);
  assert.equal(s.lastSeq, 4);
});

test("a snapshot fills a gap: held chunks it covers are dropped, later ones follow", () => {
  const s = new ChunkSequence();
  s.chunk(1, "a");
  s.chunk(4, "d");
  s.chunk(5, "e");
  assert.equal(s.snapshotDecision(1, 4, true), "replace");  // the server saved through chunk 4
  s.restartAt(1, 4);
  assert.deepEqual(s.drain(), ["e"]);
  assert.equal(s.gap, false);
  // A snapshot behind the screen is kept out; one of an older attempt is stale.
  assert.equal(s.snapshotDecision(1, 3, true), "keep");
  assert.equal(s.snapshotDecision(1, 3, false), "replace");  // nothing shown: take it
});

test("a newer attempt restarts the answer; the replaced attempt's chunks are dropped", () => {
  const s = new ChunkSequence();
  s.chunk(1, "old1");
  s.chunk(3, "old3");
  const r = s.chunk(1, "new1", 2);
  assert.equal(r.restart, true);
  assert.deepEqual(r.texts, ["new1"]);
  assert.equal(s.gap, false);  // old3 belonged to attempt 1
  assert.deepEqual(s.chunk(2, "old2", 1).texts, []);
  assert.equal(s.snapshotDecision(1, 9, true), "stale");
  assert.equal(s.snapshotDecision(3, 0, true), "replace");
  s.restartAt(3, 0);
  assert.equal(s.attempt, 3);
  assert.deepEqual(s.chunk(1, "x", 3).texts, ["x"]);
});

test("reset starts a new answer", () => {
  const s = new ChunkSequence();
  s.chunk(2, "b", 2);
  s.reset();
  assert.deepEqual([s.lastSeq, s.attempt, s.gap], [0, 1, false]);
});
