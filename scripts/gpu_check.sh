#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py) as one command, run from anywhere in the repository on a
# GPU machine that has torch, transformers, sentence-transformers and numpy but no .venv, no
# Django and no internet. At most 8 minutes in all; the JSON report is rewritten after each
# stage, so a run cut short keeps what it had measured. Extra arguments go to gpu_check.py.
#
#   bash scripts/gpu_check.sh                         # on the GPU machine
#   bash scripts/gpu_check.sh --small --device cpu    # a few seconds' check of the script itself
#
# The embedder: $GPU_CHECK_EMBEDDER (a sentence-transformers folder) when set, else
# var/gpu-check/embedder when it was carried along (written beforehand on a machine with the
# app's venv by `.venv/bin/python scripts/gpu_check.py --prepare var/gpu-check/embedder`,
# 46 MB), else the bundled package when installed, else a random model of the same shape.
# Environment: PYTHON (default: .venv/bin/python if present, else python3), OUT (report folder;
# default bench/results), GPU_CHECK_TIMEOUT_S (default 460, plus 20 s to die after TERM).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# As the Makefile runs the app (tokenizer batches single-threaded), unless set otherwise.
export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
args=()
if [ -n "${GPU_CHECK_EMBEDDER:-}" ]; then args+=(--embedder "$GPU_CHECK_EMBEDDER"); fi

status=0
timeout --kill-after=20 "${GPU_CHECK_TIMEOUT_S:-460}" \
  "$PYTHON" scripts/gpu_check.py ${args[@]+"${args[@]}"} "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "gpu check: stopped by the time limit; the report holds the stages that finished" >&2
fi
exit "$status"
