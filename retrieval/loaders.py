"""Loaders for guideline collections shipped as data (the demo corpus)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

from retrieval.errors import DocumentError
from retrieval.markdown import parse_markdown
from retrieval.types import Document, DocumentMeta


def open_medicine_root() -> Path:
    """Guideline folder of the ``open-medicine`` package (MIT), located without importing it."""
    spec = importlib.util.find_spec("open_medicine")
    if spec is None or not spec.submodule_search_locations:
        raise DocumentError("the open-medicine package is not installed (run `make install`)")
    return Path(next(iter(spec.submodule_search_locations))) / "guidelines"


def _section_title(slug: str) -> str:
    return slug.replace("_", " ").strip().capitalize()


def load_open_medicine(root: Path | None = None) -> Iterator[Document]:
    """Yield one document per guideline section file, with metadata from ``registry.json``.

    Each markdown file becomes its own document keyed ``<guideline id>/<section>``, titled with
    the guideline's title; its headings form the section path under the section's name.
    """
    root = root or open_medicine_root()
    registry = json.loads((root / "registry.json").read_text(encoding="utf-8"))
    for entry in registry:
        for section in entry.get("sections", []):
            path = root / "content" / entry["id"] / f"{section}.md"
            if not path.exists():
                continue
            doi = entry.get("doi") or ""
            meta = DocumentMeta(
                key=f"{entry['id']}/{section}",
                title=entry["title"],
                organisation=entry.get("organization", ""),
                year=entry.get("year"),
                doi=doi,
                url=f"https://doi.org/{doi}" if doi else "",
            )
            doc = parse_markdown(path.read_bytes(), meta=meta, source_name=str(path.name))
            sections = [
                type(s)(path=(_section_title(section), *s.path), text=s.text) for s in doc.sections
            ]
            yield Document(meta=meta, sections=sections, source_name=doc.source_name)
