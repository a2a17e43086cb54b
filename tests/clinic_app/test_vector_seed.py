"""The shipped seed of the demo corpus's vectors (clinic_app/demo_vectors.npz) is current and
right: it covers the corpus as chunked today, its vectors are what the installed embedder
computes, and indexing uses it instead of embedding (and embeds what it lacks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.test import override_settings

from clinic_app.core import runtime
from clinic_app.library.index_versions import passage_embedding_text
from clinic_app.models import Passage
from retrieval.vector_seed import seed_read

pytestmark = pytest.mark.django_db
SEED = Path(settings.BASE_DIR) / "clinic_app" / "demo_vectors.npz"


@pytest.fixture
def seeded() -> object:
    runtime.get_vector_seed.cache_clear()
    with override_settings(EMBEDDING_SEED=str(SEED)):
        yield runtime.get_vector_seed()
    runtime.get_vector_seed.cache_clear()


def test_the_shipped_seed_is_the_installed_embedders_and_covers_the_indexed_demo_passages(
    seeded: object,
) -> None:
    assert seeded is not None, "the seed was made by another embedder: regenerate it"
    texts = [passage_embedding_text(p) for p in Passage.objects.select_related("guideline")]
    assert len(texts) > 100
    found = seeded.lookup(texts)  # type: ignore[attr-defined]
    # Every passage of the test slice of the demo corpus, as chunked today, is in the seed: if
    # the corpus, the chunking or the embedding text changes, this fails until it is regenerated
    # (manage.py export_vector_seed).
    assert len(found) == len(texts)
    sample = list(found)[:: max(1, len(found) // 16)]
    fresh = runtime.get_embedder().encode([texts[i] for i in sample])
    cosines = [float(fresh[j] @ found[i]) for j, i in enumerate(sample)]
    # Same model and text: 0.999+ in float32, ~0.998 where the embedder runs in bf16 (auto on a
    # CPU with AVX512-BF16); another model or another text would be far below.
    assert min(cosines) >= 0.995, cosines


def test_indexing_takes_seeded_vectors_and_embeds_only_the_rest(
    seeded: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinic_app.library import index_versions
    from retrieval.index import VectorIndex

    rows = list(Passage.objects.select_related("guideline").order_by("pk")[:5])
    original = rows[-1].text
    rows[-1].text = original + " (amended)"  # a text the seed cannot know
    embedded: list[str] = []
    real = runtime.get_embedder().encode

    def counting(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return real(texts)

    monkeypatch.setattr(runtime.get_embedder(), "encode", counting)
    index = VectorIndex(runtime.get_embedder().dim, embedder=runtime.get_embedder().model_name)
    assert index_versions._index_add(index, rows, previous=None) == 0
    assert embedded == [passage_embedding_text(rows[-1])]
    seed = seed_read(SEED)
    assert len(index) == 5 and seed.keys  # all five are indexed
