"""Value types passed between the retrieval stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DocumentMeta:
    """Bibliographic facts shown with every passage cited from a document."""

    key: str
    title: str
    organisation: str = ""
    year: int | None = None
    doi: str = ""
    url: str = ""


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path, e.g. ``("Anticoagulation", "Choice of agent")``."""

    path: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Chunk:
    """A passage-sized piece of a section, ready to embed.

    ``ordinal`` is the chunk's position within its document (0-based, deterministic).
    """

    section_path: tuple[str, ...]
    text: str
    ordinal: int


@dataclass(frozen=True)
class Document:
    """A parsed document: its metadata and its sections in reading order."""

    meta: DocumentMeta
    sections: list[Section] = field(default_factory=list)
    source_name: str = ""
    # What the parser dropped or changed without failing the document (an unsafe URL...),
    # for the ingest report.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    """One search result: a passage id and its relevance score.

    ``score`` is the dense cosine similarity (-1..1) of the passage to the question, also for
    passages ranked by hybrid search, so one calibrated threshold applies to every hit
    (BM25's own ``score`` is its BM25 value when a lexical index returns it alone).
    ``lexical`` (BM25) and ``fused`` (the fusion score that set the hit's rank) are filled in
    by hybrid search; ``rerank`` (the cross-encoder score that set the hit's rank, see
    :mod:`retrieval.rerank`) by a reranking stage.
    """

    passage_id: int
    score: float
    lexical: float | None = None
    fused: float | None = None
    rerank: float | None = None
