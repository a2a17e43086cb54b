"""Document parsers: PDF, HTML, Markdown, plain text, Meditron guidelines JSONL and PubMedQA JSON.

Every parser turns bytes into :class:`~retrieval.types.Document` objects (metadata plus sections
keyed by their heading path) or raises :class:`~retrieval.errors.DocumentError` with a message fit
to show an admin. A document is parsed completely or not at all: nothing partial is returned.

Collections (Meditron JSONL, PubMedQA JSON) hold many documents; a bad record is reported as an
error with its line number or key and the good records are still returned.

:func:`parse_file` picks the parser from the content (PDF magic bytes, HTML tags, JSON shape),
using the file name only to tell Markdown from plain text.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from retrieval.errors import DocumentError
from retrieval.markdown import parse_markdown
from retrieval.types import Document, DocumentMeta, Section
from retrieval.urls import safe_http_url

FORMATS = ("auto", "pdf", "html", "markdown", "text", "meditron-jsonl", "pubmedqa")
COLLECTION_FORMATS = ("meditron-jsonl", "pubmedqa")
# A single guideline is rarely above a few MB; collections (the ~37K Meditron guidelines) are
# read record by record, so only each record is bounded.
MAX_DOCUMENT_BYTES = 50_000_000
MAX_COLLECTION_BYTES = 4_000_000_000
MAX_RECORD_BYTES = 20_000_000


@dataclass
class ParseResult:
    """Documents parsed from one source, and the errors of the records that could not be."""

    documents: list[Document] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)


# ------------------------------------------------------------------------------ plain text


def decode_text(data: bytes, *, source_name: str = "document") -> str:
    """Decode UTF-8 (BOM allowed) or BOM-marked UTF-16; else raise :class:`DocumentError`."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{source_name}: not valid UTF-16 text ({exc.reason})") from exc
    if b"\x00" in data:
        raise DocumentError(f"{source_name}: contains binary data, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            f"{source_name}: not valid UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc


def _check_size(data: bytes, max_bytes: int, source_name: str) -> None:
    if not data:
        raise DocumentError(f"{source_name}: empty file")
    if len(data) > max_bytes:
        raise DocumentError(f"{source_name}: larger than {max_bytes} bytes ({len(data)} bytes)")


def parse_text(
    data: bytes | str,
    *,
    meta: DocumentMeta,
    source_name: str = "",
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> Document:
    """Plain text: one section with no heading; paragraphs (blank-line separated) are kept."""
    name = source_name or "document"
    if isinstance(data, bytes):
        _check_size(data, max_bytes, name)
        data = decode_text(data, source_name=name)
    if "\x00" in data:
        raise DocumentError(f"{name}: contains binary data, not text")
    text = re.sub(r"\n{3,}", "\n\n", data.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if not text:
        raise DocumentError(f"{name}: no text found")
    return Document(meta=meta, sections=[Section((), text)], source_name=source_name)


# ------------------------------------------------------------------------------------ HTML

# Elements whose content is never reading text.
_DROP = frozenset(
    [
        "script",
        "style",
        "noscript",
        "template",
        "nav",
        "header",
        "footer",
        "aside",
        "form",
        "button",
        "select",
        "textarea",
        "svg",
        "canvas",
        "iframe",
        "object",
        "embed",
        "head",
        "dialog",
        "menu",
    ]
)
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "keygen",
    ]
)
_MAIN = frozenset({"main", "article"})
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
# Tags that end a block (blank line) or a line (list item, table row).
_BLOCK = frozenset(
    [
        "p",
        "div",
        "section",
        "ul",
        "ol",
        "dl",
        "table",
        "blockquote",
        "pre",
        "figure",
        "figcaption",
        "address",
        "details",
        "summary",
        "fieldset",
        "body",
        "html",
    ]
)
_LINE = frozenset({"li", "tr", "dt", "dd", "br", "caption"})
_HIDDEN_STYLE = re.compile(r"(display\s*:\s*none|visibility\s*:\s*hidden)", re.IGNORECASE)


@dataclass
class _Frame:
    tag: str
    hidden: bool
    main: bool


class _HtmlExtractor(HTMLParser):
    """Collects headings and text blocks, each marked as inside a main/article element or not."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[_Frame] = []
        # Events: ("h", level, text, in_main) or ("t", 0, block text, in_main).
        self.events: list[tuple[str, int, str, bool]] = []
        self.title = ""
        self._in_title = False
        self._lines: list[str] = []
        self._line: list[str] = []
        self._heading: tuple[int, list[str]] | None = None
        self._pre = 0

    # State of the innermost open element.
    def _hidden(self) -> bool:
        return bool(self.stack) and self.stack[-1].hidden

    def _main(self) -> bool:
        return bool(self.stack) and self.stack[-1].main

    def _end_line(self) -> None:
        line = "".join(self._line)
        line = line.strip() if self._pre else re.sub(r"\s+", " ", line).strip()
        line = re.sub(r"\s*\|\s*$", "", line)  # the separator after a row's last cell
        self._line = []
        if line.strip(" |-"):
            self._lines.append(line)

    def _end_block(self) -> None:
        self._end_line()
        if self._lines:
            self.events.append(("t", 0, "\n".join(self._lines), self._main()))
        self._lines = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _VOID:
            if tag == "br" and not self._hidden():
                self._end_line()
            return
        a = {k.lower(): (v or "") for k, v in attrs}
        hidden = (
            self._hidden()
            or tag in _DROP
            or "hidden" in a
            or a.get("aria-hidden", "").lower() == "true"
            or bool(_HIDDEN_STYLE.search(a.get("style", "")))
            or a.get("role", "").lower() in ("navigation", "banner", "contentinfo", "complementary")
        )
        main = self._main() or tag in _MAIN or a.get("role", "").lower() == "main"
        if not hidden and (tag in _BLOCK or tag in _HEADINGS or tag in _MAIN):
            self._end_block()
        elif not hidden and tag in _LINE:
            self._end_line()
        self.stack.append(_Frame(tag, hidden, main))
        if hidden:
            return
        if tag in _HEADINGS:
            self._heading = (_HEADINGS[tag], [])
        elif tag == "li":
            self._line.append("- ")
        elif tag == "pre":
            self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and not self._hidden():
            self._end_line()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        # Close up to the matching open tag; stray end tags are ignored (browsers do the same).
        if not any(f.tag == tag for f in self.stack):
            return
        while self.stack:
            frame = self.stack.pop()
            if not frame.hidden:
                self._close(frame)
            if frame.tag == tag:
                break

    def _close(self, frame: _Frame) -> None:
        tag = frame.tag
        if tag in _HEADINGS and self._heading is not None:
            level, parts = self._heading
            self._heading = None
            text = re.sub(r"\s+", " ", "".join(parts)).strip()
            if text:
                self.events.append(("h", level, text, frame.main))
        elif tag in ("td", "th"):
            self._line.append(" | ")
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._end_block()
        elif tag in _BLOCK or tag in _MAIN:
            # The block's own text belongs to its main-ness, so end it before popping further.
            self._lines_main_end(frame.main)
        elif tag in _LINE:
            self._end_line()

    def _lines_main_end(self, main: bool) -> None:
        self._end_line()
        if self._lines:
            self.events.append(("t", 0, "\n".join(self._lines), main))
        self._lines = []

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
            return
        if self._hidden():
            return
        if self._heading is not None:
            self._heading[1].append(data)
        elif self._pre:
            for i, part in enumerate(data.split("\n")):
                if i:
                    self._end_line()
                self._line.append(part)
        else:
            self._line.append(data)

    def finish(self) -> None:
        self.close()
        while self.stack:
            frame = self.stack.pop()
            if not frame.hidden:
                self._close(frame)
        self._end_block()


def parse_html(
    data: bytes | str,
    *,
    meta: DocumentMeta,
    source_name: str = "",
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> Document:
    """Main content of an HTML page; headings (h1-h6) become the section path.

    Scripts, styles, navigation, headers, footers, asides, forms and hidden elements (the
    ``hidden`` attribute, ``aria-hidden="true"``, ``display:none``/``visibility:hidden``) are
    dropped. When the page has ``<main>``, ``<article>`` or ``role="main"``, only their content is
    kept. List items become ``- item`` lines and table rows ``cell | cell`` lines, so chunking
    keeps them whole. An empty ``meta.title`` is filled from ``<title>`` or the single ``<h1>``.
    """
    name = source_name or "document"
    if isinstance(data, bytes):
        _check_size(data, max_bytes, name)
        data = decode_text(data, source_name=name)
    extractor = _HtmlExtractor()
    try:
        extractor.feed(data)
        extractor.finish()
    except Exception as exc:  # html.parser is lenient; this is a defensive catch-all
        raise DocumentError(f"{name}: unreadable HTML ({exc})") from exc
    events = extractor.events
    if any(e[3] for e in events if e[0] == "t"):
        events = [e for e in events if e[3]]
    h1s = [e[2] for e in events if e[0] == "h" and e[1] == 1]
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []

    def flush() -> None:
        if body:
            sections.append(Section(tuple(t for _, t in path), "\n\n".join(body)))
            body.clear()

    for kind, level, text, _ in events:
        if kind == "t":
            body.append(text)
            continue
        flush()
        if level == 1 and len(h1s) == 1:
            path = []
            continue
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, text))
    flush()
    if not sections:
        raise DocumentError(f"{name}: no readable text in the HTML")
    if not meta.title:
        title = re.sub(r"\s+", " ", extractor.title).strip() or (h1s[0] if len(h1s) == 1 else "")
        meta = replace(meta, title=title or _title_from_name(source_name))
    return Document(meta=meta, sections=sections, source_name=source_name)


# ------------------------------------------------------------------------------------- PDF


def parse_pdf(
    data: bytes,
    *,
    meta: DocumentMeta,
    source_name: str = "",
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> Document:
    """Text of every page with ``pypdf``; each page is a section ``("Page N",)``.

    A file without the ``%PDF-`` header, without the final ``%%EOF`` marker (truncated), that
    pypdf cannot read, that is encrypted, or whose pages hold no extractable text (a scan) is a
    :class:`DocumentError`: a partly read PDF never reaches the index.
    """
    name = source_name or "document"
    _check_size(data, max_bytes, name)
    if not data[:1024].lstrip().startswith(b"%PDF-"):
        raise DocumentError(f"{name}: not a PDF file (no %PDF- header)")
    if b"%%EOF" not in data[-2048:]:
        raise DocumentError(f"{name}: truncated PDF (no %%EOF marker at the end)")
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{name}: PDF is password-protected")
        pages = [page.extract_text() or "" for page in reader.pages]
        info_title = ""
        if reader.metadata is not None and reader.metadata.title:
            info_title = str(reader.metadata.title).strip()
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many types (PdfReadError, KeyError, ValueError...)
        raise DocumentError(f"{name}: unreadable PDF ({type(exc).__name__}: {exc})") from exc
    sections = []
    for number, text in enumerate(pages, start=1):
        text = _tidy_pdf_text(text)
        if text:
            sections.append(Section((f"Page {number}",), text))
    if not sections:
        raise DocumentError(
            f"{name}: no extractable text in {len(pages)} page(s) (a scanned PDF needs OCR)"
        )
    if not meta.title:
        meta = replace(meta, title=info_title or _title_from_name(source_name))
    return Document(meta=meta, sections=sections, source_name=source_name)


def _tidy_pdf_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\x00", "")
    text = re.sub(r"-\n(?=[a-z])", "", text)  # re-join words hyphenated across lines
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --------------------------------------------------------------------------- collections


def _record_document(record: Any, *, where: str) -> Document:
    """One Meditron guidelines record (``id, source, title, clean_text, raw_text, url``)."""
    if not isinstance(record, dict):
        raise DocumentError(f"{where}: expected a JSON object")
    text = record.get("clean_text") or record.get("raw_text") or ""
    if not isinstance(text, str) or not text.strip():
        raise DocumentError(f"{where}: no clean_text or raw_text")
    rid = record.get("id")
    if rid in (None, ""):
        raise DocumentError(f"{where}: missing id")
    source = str(record.get("source") or "")
    title = str(record.get("title") or "").strip()
    url = str(record.get("url") or "")
    meta, warnings = _with_safe_url(
        DocumentMeta(
            key=f"meditron/{source or 'unknown'}/{rid}",
            title=title or f"{source} guideline {rid}".strip(),
            organisation=source,
            url=url,
            doi=_doi_from_url(url),  # shown as text, never linked: a doi: URI still names it
        ),
        f"record {str(rid)[:80]} ({where})",
    )
    # clean_text uses markdown-style headings; the title heading is already in ``meta``.
    doc = parse_markdown(text, meta=meta, source_name=where)
    return replace(doc, warnings=(*doc.warnings, *warnings)) if warnings else doc


def _url_dropped(where: str) -> str:
    return f"{where}: url dropped (scheme not http/https)"


def _with_safe_url(meta: DocumentMeta, where: str) -> tuple[DocumentMeta, tuple[str, ...]]:
    """``meta`` with its URL kept only if http(s), and the warning when it was dropped."""
    if not meta.url.strip():
        return replace(meta, url=""), ()
    url = safe_http_url(meta.url)
    if url is None:
        return replace(meta, url=""), (_url_dropped(where),)
    return replace(meta, url=url), ()


def _doi_from_url(url: str) -> str:
    match = re.search(r"(?:doi\.org/|doi:)(10\.\d{4,9}/\S+)", url)
    return match.group(1) if match else ""


def iter_meditron_jsonl(
    lines: Iterator[bytes], *, source_name: str = "guidelines.jsonl"
) -> Iterator[Document | DocumentError]:
    """Yield a document per good line and a :class:`DocumentError` (with line number) per bad one.

    Blank lines are skipped; an oversized line is an error for that line only.
    """
    for number, raw in enumerate(lines, start=1):
        where = f"{source_name} line {number}"
        if not raw.strip():
            continue
        if len(raw) > MAX_RECORD_BYTES:
            yield DocumentError(f"{where}: record larger than {MAX_RECORD_BYTES} bytes")
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield DocumentError(f"{where}: not valid UTF-8 ({exc.reason})")
            continue
        except json.JSONDecodeError as exc:
            yield DocumentError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        try:
            yield _record_document(record, where=where)
        except DocumentError as exc:
            yield exc


def parse_pubmedqa(data: bytes | str, *, source_name: str = "pubmedqa.json") -> ParseResult:
    """PubMedQA JSON (``{pmid: {QUESTION, CONTEXTS, LABELS, YEAR, ...}}``): a document per PMID.

    Each context paragraph becomes a section named by its label (``BACKGROUND``, ``METHODS``...).
    The question and the answer fields are not part of the document: they are not abstract text.
    """
    name = source_name or "pubmedqa.json"
    if isinstance(data, bytes):
        _check_size(data, MAX_COLLECTION_BYTES, name)
        data = decode_text(data, source_name=name)
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{name}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(payload, dict):
        raise DocumentError(f"{name}: expected a JSON object keyed by PMID")
    result = ParseResult()
    for pmid, item in payload.items():
        where = f"{name} PMID {pmid}"
        contexts = item.get("CONTEXTS") if isinstance(item, dict) else None
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            result.errors.append(DocumentError(f"{where}: CONTEXTS must be a list of strings"))
            continue
        labels = item.get("LABELS") or []
        sections = [
            Section(
                (str(labels[i]).strip().capitalize(),) if i < len(labels) and labels[i] else (),
                text.strip(),
            )
            for i, text in enumerate(contexts)
            if text.strip()
        ]
        if not sections:
            result.errors.append(DocumentError(f"{where}: no context text"))
            continue
        year = item.get("YEAR")
        meta = DocumentMeta(
            key=f"pubmed/{pmid}",
            title=f"PubMed {pmid}",
            organisation="PubMed",
            year=int(year) if isinstance(year, str | int) and str(year).isdigit() else None,
            url=f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/",
        )
        result.documents.append(Document(meta=meta, sections=sections, source_name=where))
    if not result.documents and not result.errors:
        raise DocumentError(f"{name}: no PubMedQA items")
    return result


# ------------------------------------------------------------------------------ dispatch


def _title_from_name(source_name: str) -> str:
    stem = Path(source_name).stem if source_name else ""
    return stem.replace("_", " ").replace("-", " ").strip().capitalize() or "Untitled document"


def sniff_format(data: bytes, *, source_name: str = "") -> str:
    """Guess the format from the content first, then (Markdown vs text) from the file name.

    ``data`` may be just the first few KB of the file. Raises :class:`DocumentError` for empty
    input and for binary data that is no supported format.
    """
    name = source_name or "document"
    if not data.strip():
        raise DocumentError(f"{name}: empty file")
    head = data[:8192]
    if head.lstrip()[:5] == b"%PDF-":
        return "pdf"
    suffix = Path(source_name).suffix.lower()
    if suffix == ".pdf":
        raise DocumentError(f"{name}: not a PDF file (no %PDF- header)")
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DocumentError(f"{name}: binary data in no supported format")
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    lowered = text[:2048].lower()
    if text.startswith("{"):
        first_line = text.split("\n", 1)[0]
        try:
            record = json.loads(first_line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and ({"clean_text", "raw_text"} & record.keys()):
            return "meditron-jsonl"
        if '"CONTEXTS"' in text or suffix == ".json":
            return "pubmedqa"
        if suffix == ".jsonl":
            return "meditron-jsonl"
    if suffix == ".jsonl":
        return "meditron-jsonl"
    if lowered.startswith(("<!doctype html", "<html", "<?xml")) or re.search(
        r"<(html|body|head|main|article|p|div|h[1-6])[\s>]", lowered
    ):
        return "html"
    if suffix in (".htm", ".html", ".xhtml"):
        return "html"
    if suffix in (".md", ".markdown"):
        return "markdown"
    if suffix == ".txt":
        return "text"
    return "markdown" if re.search(r"(?m)^#{1,6} \S", text) else "text"


def parse_bytes(
    data: bytes,
    *,
    format: str = "auto",
    meta: DocumentMeta | None = None,
    source_name: str = "",
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> ParseResult:
    """Parse ``data`` in ``format`` (or the sniffed one). See :func:`parse_file`."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    name = source_name or "document"
    if format == "auto":
        format = sniff_format(data, source_name=source_name)
    if format == "meditron-jsonl":
        result = ParseResult()
        for item in iter_meditron_jsonl(iter(data.splitlines()), source_name=name):
            if isinstance(item, DocumentError):
                result.errors.append(item)
            else:
                result.documents.append(item)
        if not result.documents and not result.errors:
            raise DocumentError(f"{name}: no records")
        return result
    if format == "pubmedqa":
        return parse_pubmedqa(data, source_name=name)
    meta = meta or DocumentMeta(key=f"file/{Path(name).stem}", title="")
    # The caller's URL (upload form, command line) goes where a record's would: same check.
    meta, warnings = _with_safe_url(meta, name)
    doc: Document
    if format == "pdf":
        doc = parse_pdf(data, meta=meta, source_name=source_name, max_bytes=max_bytes)
    elif format == "html":
        doc = parse_html(data, meta=meta, source_name=source_name, max_bytes=max_bytes)
    else:
        _check_size(data, max_bytes, name)
        if not meta.title and format == "markdown":
            heading = re.search(
                r"(?m)^#[ \t]+(.+?)[ \t#]*$", data[:65536].decode("utf-8", "ignore")
            )
            if heading:
                meta = replace(meta, title=heading.group(1).strip()[:500])
        if not meta.title:
            meta = replace(meta, title=_title_from_name(source_name))
        parse = parse_markdown if format == "markdown" else parse_text
        doc = parse(data, meta=meta, source_name=source_name, max_bytes=max_bytes)
    if warnings:
        doc = replace(doc, warnings=(*doc.warnings, *warnings))
    return ParseResult(documents=[doc])


def parse_file(
    source: str | Path | bytes,
    *,
    format: str = "auto",
    meta: DocumentMeta | None = None,
    source_name: str = "",
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> ParseResult:
    """Parse a file (path) or its content (bytes) into documents.

    ``format`` is one of :data:`FORMATS`; ``auto`` sniffs the content. ``meta`` applies to
    single-document formats (PDF, HTML, Markdown, text); its empty ``title`` is filled from the
    document (HTML ``<title>``, PDF info) or the file name. Collections build each record's
    metadata from the record. ``max_bytes`` bounds single documents; collections are bounded per
    record. Raises :class:`DocumentError` when the source as a whole cannot be parsed; bad
    records of a collection are returned in :attr:`ParseResult.errors`.
    """
    if isinstance(source, bytes):
        return parse_bytes(
            source, format=format, meta=meta, source_name=source_name, max_bytes=max_bytes
        )
    path = Path(source)
    name = source_name or path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise DocumentError(f"{name}: cannot be read ({exc.strerror or exc})") from exc
    fmt = format if format != "auto" else sniff_format(head, source_name=name)
    limit = MAX_COLLECTION_BYTES if fmt in COLLECTION_FORMATS else max_bytes
    if size > limit:
        raise DocumentError(f"{name}: larger than {limit} bytes ({size} bytes)")
    if fmt == "meditron-jsonl":
        result = ParseResult()
        with path.open("rb") as fh:
            for item in iter_meditron_jsonl(iter(fh), source_name=name):
                if isinstance(item, DocumentError):
                    result.errors.append(item)
                else:
                    result.documents.append(item)
        if not result.documents and not result.errors:
            raise DocumentError(f"{name}: no records")
        return result
    return parse_bytes(
        path.read_bytes(), format=fmt, meta=meta, source_name=name, max_bytes=max_bytes
    )
