"""Markdown parsing: headings become the section path, the text under them the section body."""

from __future__ import annotations

import re

from retrieval.errors import DocumentError
from retrieval.types import Document, DocumentMeta, Section

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def parse_markdown(
    text: str | bytes, *, meta: DocumentMeta, source_name: str = "", max_bytes: int = 5_000_000
) -> Document:
    """Parse markdown into sections keyed by their heading path.

    The first level-1 heading, when the document has exactly one, is treated as the document
    title and left out of section paths (it is already in ``meta``). Headings inside fenced code
    blocks are ignored. Raises :class:`DocumentError` for empty, oversized or undecodable input.
    """
    if isinstance(text, bytes):
        if len(text) > max_bytes:
            raise DocumentError(f"{source_name or 'document'}: larger than {max_bytes} bytes")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError(
                f"{source_name or 'document'}: not valid UTF-8 text ({exc.reason})"
            ) from exc
    if "\x00" in text:
        raise DocumentError(f"{source_name or 'document'}: contains binary data")
    lines = text.replace("\r\n", "\n").split("\n")
    h1_count = sum(1 for line in lines if line.startswith("# "))

    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        content = "\n".join(body).strip()
        if content:
            sections.append(Section(path=tuple(title for _, title in path), text=content))
        body.clear()

    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        flush()
        level, title = len(match.group(1)), match.group(2).strip()
        if level == 1 and h1_count == 1:
            path = []
            continue
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
    flush()
    if not sections:
        raise DocumentError(f"{source_name or 'document'}: no text found")
    return Document(meta=meta, sections=sections, source_name=source_name)
