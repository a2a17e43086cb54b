"""Settings for the pytest process: the app's own settings, plus a secret key for this run.

pytest-django loads the settings before any conftest runs, and the app refuses to start without
a real SECRET_KEY when DEBUG is off, so the key is provided here. It goes into the environment,
so every server, worker and command a test starts (tests/live.py copies the environment) signs
with the same key. A fresh random key per run: nothing signed by a test outlives it.
"""

from __future__ import annotations

import os
import secrets

os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

from clinic_app.settings import *  # noqa: F403

# The tests embed what they index, so that the embedding path is what they exercise; the demo
# corpus's precomputed vectors are tested on their own (tests/clinic_app/test_vector_seed.py).
EMBEDDING_SEED = ""
