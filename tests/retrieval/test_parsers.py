from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.errors import DocumentError
from retrieval.parsers import (
    parse_file,
    parse_html,
    parse_pdf,
    parse_pubmedqa,
    parse_text,
    sniff_format,
)
from retrieval.types import DocumentMeta

META = DocumentMeta(key="t/1", title="")


def make_pdf(pages: list[str], *, title: str = "") -> bytes:
    """A minimal valid PDF (one Helvetica text line per page), cross-reference table included."""
    objects: list[bytes] = []
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    info = len(objects) + 1
    objects.append(f"<< /Title ({title}) >>".encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {info} 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)


# --------------------------------------------------------------------------------- PDF


def test_pdf_pages_become_sections_and_the_info_title_fills_an_empty_title() -> None:
    data = make_pdf(["Give apixaban 5 mg twice daily.", "Check renal function yearly."], title="AF")
    doc = parse_pdf(data, meta=META, source_name="af.pdf")
    assert doc.meta.title == "AF"
    assert [s.path for s in doc.sections] == [("Page 1",), ("Page 2",)]
    assert "apixaban 5 mg" in doc.sections[0].text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (make_pdf(["Some text here."])[:-200], "truncated"),
        (make_pdf(["x"])[:300] + b"\x00garbage" * 40 + b"\n%%EOF\n", "unreadable|no extractable"),
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a PDF"),
        (make_pdf([""]), "no extractable text"),
    ],
    ids=["truncated", "corrupt-body", "empty", "binary-garbage", "no-text"],
)
def test_malformed_pdfs_raise_a_typed_error(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_pdf(data, meta=META, source_name="bad.pdf")


def test_oversized_pdf_is_rejected_before_parsing() -> None:
    with pytest.raises(DocumentError, match="larger than"):
        parse_pdf(make_pdf(["text"]), meta=META, max_bytes=100)


# -------------------------------------------------------------------------------- HTML

PAGE = b"""<!doctype html><html><head><title>AF guideline</title>
<style>p { color: red }</style><script>var secret = "script";</script></head>
<body><nav><a href="/">Home nav</a></nav><header><h1>Site banner</h1></header>
<main><h1>Atrial fibrillation</h1><p>Intro <b>bold</b> text.</p>
<div hidden>hidden attr</div><p aria-hidden="true">aria hidden</p>
<p style="color: red; display: none">display none</p>
<h2>Dosing</h2><ul><li>Apixaban 5 mg</li><li>Warfarin to INR 2-3</li></ul>
<table><tr><th>Drug</th><th>Dose</th></tr><tr><td>Edoxaban</td><td>60 mg</td></tr></table>
<h3>Renal</h3><p>Halve the dose.</p></main>
<aside>Related ads</aside><footer>Copyright footer</footer></body></html>"""


def test_html_keeps_main_content_with_heading_paths_lists_and_table_rows() -> None:
    doc = parse_html(PAGE, meta=META, source_name="af.html")
    assert doc.meta.title == "AF guideline"
    assert [s.path for s in doc.sections] == [(), ("Dosing",), ("Dosing", "Renal")]
    dosing = doc.sections[1].text
    assert "- Apixaban 5 mg\n- Warfarin to INR 2-3" in dosing
    assert "Drug | Dose\nEdoxaban | 60 mg" in dosing
    everything = " ".join(s.text for s in doc.sections)
    for dropped in (
        "secret",
        "Home nav",
        "Site banner",
        "hidden attr",
        "aria hidden",
        "display none",
        "Related ads",
        "Copyright",
        "color",
    ):
        assert dropped not in everything


def test_html_without_main_element_keeps_the_body_minus_boilerplate() -> None:
    doc = parse_html(
        b"<html><body><nav>menu</nav><p>First para.</p><div><p>Second para.</p></div></body></html>",
        meta=META,
    )
    assert doc.sections[0].text == "First para.\n\nSecond para."


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<html><body><script>only()</script><nav>x</nav></body></html>", "no readable text"),
        (b"<html>\xff\xfe\xfd</html>", "UTF-8"),
    ],
)
def test_malformed_html_raises_a_typed_error(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_html(data, meta=META, source_name="bad.html")


# -------------------------------------------------------------------------------- text


def test_plain_text_is_one_section_and_hash_lines_are_not_headings() -> None:
    doc = parse_text(b"\xef\xbb\xbf# not a heading\r\n\r\n\r\n\r\nSecond para.", meta=META)
    assert [s.path for s in doc.sections] == [()]
    assert doc.sections[0].text == "# not a heading\n\nSecond para."


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"   \n\t\n", "no text"),
        (b"caf\xe9 latin-1", "UTF-8"),
        (b"a\x00b", "binary"),
    ],
)
def test_malformed_text_raises_a_typed_error(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_text(data, meta=META, source_name="bad.txt")


def test_oversized_text_is_rejected() -> None:
    with pytest.raises(DocumentError, match="larger than"):
        parse_text(b"x" * 101, meta=META, max_bytes=100)


# ----------------------------------------------------------------------- Meditron JSONL


def meditron_line(**fields: object) -> bytes:
    record = {
        "id": "abc",
        "source": "who",
        "title": "Malaria treatment",
        "clean_text": "# Malaria treatment\n\n## Artemisinin\n\nGive ACT for 3 days.",
        "raw_text": "raw",
        "url": "https://doi.org/10.1234/mal.1",
        "overview": "",
    }
    record.update(fields)
    return json.dumps(record).encode()


def test_meditron_jsonl_yields_a_document_per_record_and_reports_bad_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "guidelines.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                meditron_line(),
                b"{not json",
                meditron_line(id="def", clean_text="", raw_text=""),
                b"",
                meditron_line(id="ghi", clean_text="", raw_text="Raw text only."),
                b"\xff\xfe bad bytes",
            ]
        )
    )
    result = parse_file(path)
    assert [d.meta.key for d in result.documents] == ["meditron/who/abc", "meditron/who/ghi"]
    first = result.documents[0]
    assert first.meta.title == "Malaria treatment" and first.meta.organisation == "who"
    assert first.meta.doi == "10.1234/mal.1"
    assert first.sections[0].path == ("Artemisinin",)
    assert result.documents[1].sections[0].text == "Raw text only."
    messages = [str(e) for e in result.errors]
    assert len(messages) == 3
    assert "line 2: invalid JSON" in messages[0]
    assert "line 3: no clean_text" in messages[1]
    assert "line 6: not valid UTF-8" in messages[2]


def test_meditron_record_without_id_is_an_error() -> None:
    result = parse_file(meditron_line(id=None), format="meditron-jsonl")
    assert result.documents == [] and "missing id" in str(result.errors[0])


# ----------------------------------------------------------------------------- PubMedQA


def test_pubmedqa_is_one_document_per_pmid_with_labelled_sections() -> None:
    data = {
        "123": {
            "QUESTION": "Does X help?",
            "CONTEXTS": ["Background text.", "Results text."],
            "LABELS": ["BACKGROUND", "RESULTS"],
            "YEAR": "2001",
            "LONG_ANSWER": "Yes it does.",
        },
        "456": {"QUESTION": "Bad", "CONTEXTS": "not a list"},
    }
    result = parse_pubmedqa(json.dumps(data).encode())
    [doc] = result.documents
    assert doc.meta.key == "pubmed/123" and doc.meta.year == 2001
    assert doc.meta.url == "https://pubmed.ncbi.nlm.nih.gov/123/"
    assert [(s.path, s.text) for s in doc.sections] == [
        (("Background",), "Background text."),
        (("Results",), "Results text."),
    ]
    text = " ".join(s.text for s in doc.sections) + doc.meta.title
    assert "Does X help" not in text and "Yes it does" not in text  # no answer leakage
    assert "PMID 456" in str(result.errors[0])


def test_pubmedqa_that_is_not_json_is_a_typed_error() -> None:
    with pytest.raises(DocumentError, match="invalid JSON"):
        parse_pubmedqa(b'{"123": {"CONTEXTS": [', source_name="p.json")


# ---------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (make_pdf(["x"]), "report.txt", "pdf"),  # content beats the extension
        (b"<!DOCTYPE html><html><body><p>x</p></body></html>", "page", "html"),
        (b"<div><p>hello</p></div>", "notes.txt", "html"),
        (b"# Title\n\nBody", "notes", "markdown"),
        (b"Just words.", "notes", "text"),
        (b"# Title\n\nBody", "notes.txt", "text"),
        (meditron_line() + b"\n", "dump", "meditron-jsonl"),
        (b'{"1": {"QUESTION": "q", "CONTEXTS": ["c"]}}', "dev", "pubmedqa"),
    ],
)
def test_format_is_sniffed_from_content(data: bytes, name: str, expected: str) -> None:
    assert sniff_format(data, source_name=name) == expected


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (b"", "empty.md", "empty"),
        (bytes(range(256)) * 8, "blob.bin", "binary"),
        (b"plain words", "fake.pdf", "not a PDF"),
        (b"\x00\x01\x02garbage", "fake.txt", "binary"),
    ],
)
def test_dispatcher_rejects_garbage_with_a_typed_error(data: bytes, name: str, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_file(data, source_name=name)


def test_parse_file_reads_paths_and_fills_the_title_from_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "sepsis_bundle.md").write_text("## Antibiotics\n\nWithin one hour.")
    (tmp_path / "scan.pdf").write_bytes(make_pdf(["Page text."]))
    md = parse_file(tmp_path / "sepsis_bundle.md").documents[0]
    assert md.meta.title == "Sepsis bundle" and md.meta.key == "file/sepsis_bundle"
    assert md.sections[0].path == ("Antibiotics",)
    pdf = parse_file(tmp_path / "scan.pdf", meta=DocumentMeta(key="k", title="Given")).documents[0]
    assert pdf.meta.title == "Given" and pdf.sections[0].text == "Page text."


def test_oversized_file_on_disk_is_rejected_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 2048)
    with pytest.raises(DocumentError, match="larger than"):
        parse_file(path, max_bytes=1024)


def test_missing_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="cannot be read"):
        parse_file(tmp_path / "nope.md")


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        parse_file(b"x", format="docx")


def test_markdown_with_a_byte_order_mark_keeps_its_headings() -> None:
    from retrieval.parsers import parse_file

    data = "\ufeff# Title\n\n## Dosing\n\nGive 5 mg.\n".encode("utf-8")
    doc = parse_file(data, format="markdown", source_name="bom.md").documents[0]
    assert [s.path for s in doc.sections] == [("Dosing",)]
