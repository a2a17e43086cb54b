"""Write the live index's vectors of the active guidelines as a vector seed (vector_seed.py).

Used to refresh ``clinic_app/demo_vectors.npz`` after the demo corpus, the chunking or the
embedder changes: ``make setup`` (embeds what the old seed lacks), then
``manage.py export_vector_seed --output clinic_app/demo_vectors.npz``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinic_app.core import runtime
from clinic_app.library.index_versions import passage_embedding_text
from clinic_app.models import IndexVersion, Passage
from retrieval.index import VectorIndex
from retrieval.vector_seed import seed_write


class Command(BaseCommand):
    help = "Write the live index's vectors of the active guidelines as a vector seed (.npz)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", required=True, type=Path)
        parser.add_argument("--source", default="", help="what the texts are, for people")

    def handle(self, *args: Any, **options: Any) -> None:
        live = IndexVersion.objects.filter(live=True).first()
        if live is None:
            raise CommandError("No index version is live: build one first (`make setup`).")
        index = VectorIndex.load(Path(settings.INDEX_DIR), version=live.version)
        rows = list(
            Passage.objects.filter(guideline__active=True)
            .select_related("guideline")
            .order_by("pk")
        )
        found = index.vectors([p.pk for p in rows])
        kept = [p for p in rows if p.pk in found]
        if not kept:
            raise CommandError("The live index holds no vectors of active guidelines.")
        embedder = runtime.get_embedder()
        path = seed_write(
            options["output"],
            embedder=embedder.model_name,
            fingerprint=embedder.fingerprint,
            source=options["source"] or f"index version {live.version}",
            texts=[passage_embedding_text(p) for p in kept],
            vectors=np.stack([found[p.pk] for p in kept]),
        )
        self.stdout.write(f"{len(kept)} vectors written to {path}")
