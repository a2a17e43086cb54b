from __future__ import annotations

import pytest

from retrieval.chunking import chunk_sections, embedding_text
from retrieval.errors import DocumentError
from retrieval.markdown import parse_markdown
from retrieval.types import DocumentMeta, Section

META = DocumentMeta(key="t/1", title="Test guideline")


def words(text: str) -> int:
    """A whitespace tokenizer: enough to test packing rules deterministically."""
    return len(text.split())


def test_headings_become_the_section_path_and_single_h1_is_the_title() -> None:
    doc = parse_markdown(
        "# Title\n\nIntro text.\n\n## Dosing\n\nGive 5 mg.\n\n### Renal\n\nHalve it.\n\n## Monitoring\n\nCheck INR.",
        meta=META,
    )
    assert [s.path for s in doc.sections] == [(), ("Dosing",), ("Dosing", "Renal"), ("Monitoring",)]
    assert doc.sections[2].text == "Halve it."


def test_headings_inside_code_fences_are_text() -> None:
    doc = parse_markdown("## A\n\n```\n# not a heading\n```\n", meta=META)
    assert [s.path for s in doc.sections] == [("A",)]
    assert "# not a heading" in doc.sections[0].text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no text"),
        (b"\xff\xfe\xfa", "UTF-8"),
        (b"abc\x00def", "binary"),
        (b"  \n\n ", "no text"),
    ],
)
def test_malformed_markdown_raises_a_clear_typed_error(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_markdown(data, meta=META, source_name="bad.md")


def test_oversized_document_is_rejected() -> None:
    with pytest.raises(DocumentError, match="larger than"):
        parse_markdown(b"x" * 101, meta=META, max_bytes=100)


def test_chunks_never_exceed_the_limit_and_keep_list_items_whole() -> None:
    items = "\n".join(f"- item {i} has some words in it" for i in range(40))
    section = Section(("Doses",), "Opening paragraph here.\n\n" + items + "\n\nClosing words.")
    chunks = chunk_sections([section], count_tokens=words, max_tokens=30)
    assert all(words(c.text) <= 30 for c in chunks)
    lines = [line for c in chunks for line in c.text.split("\n") if line.startswith("- item")]
    assert len(lines) == 40  # every list item survives whole, none torn across chunks
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_a_single_overlong_line_is_split_on_words() -> None:
    chunks = chunk_sections([Section((), " ".join(["w"] * 100))], count_tokens=words, max_tokens=16)
    assert all(words(c.text) <= 16 for c in chunks)
    assert sum(words(c.text) for c in chunks) == 100


def test_chunking_is_deterministic_and_overlap_repeats_blocks() -> None:
    section = Section(("S",), "\n\n".join(f"para {i} " + "x " * 8 for i in range(10)))
    a = chunk_sections([section], count_tokens=words, max_tokens=25, overlap_blocks=1)
    b = chunk_sections([section], count_tokens=words, max_tokens=25, overlap_blocks=1)
    assert a == b
    first_last_block = a[0].text.split("\n\n")[-1]
    assert a[1].text.startswith(first_last_block)


def test_embedding_text_carries_title_and_section_path() -> None:
    assert embedding_text("G", ("A", "B"), "body") == "G > A > B\nbody"
