"""Measure the in-process engines on this machine and record which answers faster.

``INFERENCE_BACKEND=embedded`` then uses the recorded engine, and ``EMBEDDED_MODEL_DTYPE=auto``
its recorded precision (clinic_app/core/runtime.py). llama.cpp is measured in each precision
``auto`` may stand for here (``inference.backends.llamacpp_backend.auto_candidates``: the
shipped quantised file and its Q8_0 copy, and bf16 where native); transformers in its own. Run in
the background by ``make run`` and at the end of a background llama.cpp build. ``--if-needed``
does nothing when a measurement for this machine, these engine versions and these settings is
already recorded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinic_app.core import runtime
from inference.backends.llamacpp_backend import auto_candidates
from inference.calibrate import engine_choose, engine_rates


class Command(BaseCommand):
    help = "Measure llama.cpp and transformers here and record the faster one for `embedded`."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--if-needed", action="store_true", help="skip if already measured")
        parser.add_argument("--prompt-tokens", type=int, default=600)
        parser.add_argument("--new-tokens", type=int, default=24)

    def handle(self, *args: Any, **options: Any) -> None:
        missing = runtime.engines_missing()
        if missing:
            self.stdout.write(f"Engine choice not measured: {missing}.")
            return
        if options["if_needed"] and runtime.engine_choice_read() is not None:
            self.stdout.write("Engine choice already measured on this machine.")
            return
        rates = []
        typical = answer = 0
        for engine, dtype in self._candidates():
            backend = runtime.embedded_backend_build(engine, dtype)
            typical = runtime.typical_prompt_tokens(backend)
            answer = runtime.typical_answer_tokens(backend)
            self.stderr.write(f"measuring {engine} ({backend.info.extra.get('dtype')})...")
            rates.append(
                engine_rates(
                    backend,
                    prompt_tokens=options["prompt_tokens"],
                    new_tokens=options["new_tokens"],
                )
            )
            del backend
        best = engine_choose(rates, prompt_tokens=typical, answer_tokens=answer)
        record = {
            "key": runtime.engine_choice_key(),
            "engine": best.engine,
            "precision": best.precision,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rates": [r.as_dict(typical, answer) for r in rates],
        }
        path = runtime.engine_choice_path()
        try:
            path.write_text(json.dumps(record, indent=2) + "\n")
        except OSError as exc:
            raise CommandError(f"could not record the engine choice in {path}: {exc}") from exc
        runtime.get_backend.cache_clear()
        lines = [
            f"  {r.engine} ({r.precision}): prompt {r.prompt_tokens_per_s:.0f} tokens/s, "
            f"answer {r.decode_tokens_per_s:.1f} tokens/s; typical {typical}-token prompt and "
            f"{answer}-token answer: first token {r.first_token_s(typical):.1f} s, "
            f"answer {r.projected_s(typical, answer):.1f} s"
            for r in rates
        ]
        self.stdout.write("\n".join(["Engine speeds on this machine:", *lines]))
        self.stdout.write(f"Embedded engine: {best.engine}, {best.precision} (recorded in {path})")

    @staticmethod
    def _candidates() -> list[tuple[str, str | None]]:
        """(engine, precision) pairs to measure; ``None``: the configured precision."""
        if settings.EMBEDDED_MODEL_DTYPE != "auto":
            return [("llamacpp", None), ("transformers", None)]
        return [*(("llamacpp", dtype) for dtype in auto_candidates()), ("transformers", None)]
