"""Structure-aware chunking: passages that respect paragraphs and list items and fit the embedder.

Sections are split on blank lines into blocks (a paragraph, a whole list, a table); blocks are
packed greedily into chunks of at most ``max_tokens`` tokens. A block longer than the limit is
split on line boundaries (so list items and table rows stay whole), and only a single over-long
line is split on words. Each chunk is prefixed with nothing: the section path travels as
metadata and is added to the embedded text by :func:`embedding_text`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from retrieval.types import Chunk, Section

TokenCounter = Callable[[str], int]


def _split_long(text: str, *, max_tokens: int, count: TokenCounter, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` into pieces of at most ``max_tokens`` (words as a last resort)."""
    pieces: list[str] = []
    current: list[str] = []
    for part in text.split(sep):
        candidate = sep.join([*current, part])
        if current and count(candidate) > max_tokens:
            pieces.append(sep.join(current))
            current = [part]
        else:
            current.append(part)
    if current:
        pieces.append(sep.join(current))
    if sep == " ":
        return pieces
    out: list[str] = []
    for piece in pieces:
        if count(piece) > max_tokens:
            out.extend(_split_long(piece, max_tokens=max_tokens, count=count, sep=" "))
        else:
            out.append(piece)
    return out


def _blocks(section_text: str, *, max_tokens: int, count: TokenCounter) -> list[str]:
    blocks: list[str] = []
    for block in (b.strip() for b in section_text.split("\n\n")):
        if not block:
            continue
        if count(block) > max_tokens:
            blocks.extend(_split_long(block, max_tokens=max_tokens, count=count, sep="\n"))
        else:
            blocks.append(block)
    return blocks


def chunk_sections(
    sections: Iterable[Section],
    *,
    count_tokens: TokenCounter,
    max_tokens: int = 200,
    overlap_blocks: int = 0,
) -> list[Chunk]:
    """Pack each section's blocks into chunks of at most ``max_tokens`` tokens.

    ``count_tokens`` should be the embedder's own tokenizer (see
    :meth:`retrieval.embedder.Embedder.count_tokens`). ``overlap_blocks`` repeats the last N
    blocks of a chunk at the start of the next one within a section. Output is deterministic.
    """
    if max_tokens < 16:
        raise ValueError("max_tokens must be at least 16")
    # Blocks are counted once; a chunk's size is the sum of its blocks' sizes (separators are
    # whitespace, which subword tokenizers do not count), then checked exactly when emitted.
    chunks: list[Chunk] = []

    def emit(path: tuple[str, ...], blocks: list[str]) -> None:
        text = "\n\n".join(blocks)
        if len(blocks) > 1 and count_tokens(text) > max_tokens:
            emit(path, blocks[: len(blocks) // 2])
            emit(path, blocks[len(blocks) // 2 :])
            return
        chunks.append(Chunk(path, text, len(chunks)))

    for section in sections:
        blocks = _blocks(section.text, max_tokens=max_tokens, count=count_tokens)
        sizes = [count_tokens(b) for b in blocks]
        total = 0
        current: list[int] = []
        for i, size in enumerate(sizes):
            if current and total + size > max_tokens:
                emit(section.path, [blocks[j] for j in current])
                current = current[-overlap_blocks:] if overlap_blocks else []
                total = sum(sizes[j] for j in current)
                if total + size > max_tokens:
                    current, total = [], 0
            current.append(i)
            total += size
        if current:
            emit(section.path, [blocks[j] for j in current])
    return chunks


def embedding_text(title: str, section_path: tuple[str, ...], text: str) -> str:
    """The text actually embedded: document title and section path give the passage context."""
    heading = " > ".join(p for p in (title, *section_path) if p)
    return f"{heading}\n{text}" if heading else text
