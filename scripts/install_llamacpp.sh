#!/usr/bin/env bash
# Install llama-cpp-python (requirements-engine.txt) into the app's venv, built for this CPU.
#
# PyPI ships it as source only. The build targets the CPU it runs on (GGML_NATIVE: AVX2,
# AVX-512, AVX512-BF16... whatever this machine has), so the wheel is cached under a key made of
# the CPU's flags, the version, the build options and the Python version: a later install on the
# same kind of machine (a fresh clone, CI) takes seconds, and a wheel never runs on a CPU it was
# not built for. Only the library is built: no tools, examples, server or multimodal support.
#
#   VPY=.venv/bin/python bash scripts/install_llamacpp.sh [--background]
#
# --background (what `make run` uses): when the wheel has to be built, build it in the background
# at low priority (log: var/log/llamacpp-build.log) and return at once; the app serves on the
# transformers engine meanwhile and switches to llama.cpp by itself when it is installed
# (clinic_app/core/runtime.py). Installed already, or a cached wheel: the same as without the flag.
set -euo pipefail
cd "$(dirname "$0")/.."
VPY=${VPY:-.venv/bin/python}
REQUIREMENT=$(grep -E '^llama-cpp-python==' requirements-engine.txt)
VERSION=${REQUIREMENT#*==}
export CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"

if "$VPY" - "$VERSION" <<'PY' 2>/dev/null; then
import sys
import llama_cpp
sys.exit(llama_cpp.__version__ != sys.argv[1])
PY
  exit 0
fi

key=$( { grep -m1 '^flags' /proc/cpuinfo || uname -m; echo "$VERSION $CMAKE_ARGS"; "$VPY" -V; } | sha256sum | cut -c1-16)
cache="${LLAMA_CPP_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clinic-app/llama-cpp}/$key"
wheel=$(ls "$cache"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
log=${LLAMA_CPP_BUILD_LOG:-var/log/llamacpp-build.log}
if [ -z "$wheel" ] && [ "${1:-}" = "--background" ]; then
  mkdir -p "$(dirname "$log")"
  if pgrep -f "pip wheel .*llama-cpp-python==$VERSION" >/dev/null; then
    echo "    llama.cpp is already being built in the background ($log)"
  else
    nohup nice -n 19 env VPY="$VPY" CALIBRATE_AFTER=1 bash "$0" > "$log" 2>&1 < /dev/null &
    echo "    llama.cpp $VERSION is building in the background for this CPU (once per machine,"
    echo "    about 8 min on 2 cores; log: $log). Until it is installed the app answers"
    echo "    with the slower transformers engine, then switches to llama.cpp by itself."
  fi
  exit 0
fi
if [ -z "$wheel" ] && pgrep -f "pip wheel .*llama-cpp-python==$VERSION" >/dev/null; then
  # `make run` started the build in the background: wait for it rather than build twice.
  echo "    waiting for the background build of llama.cpp ($log)"
  while pgrep -f "pip wheel .*llama-cpp-python==$VERSION" >/dev/null; do sleep 5; done
  sleep 2
  wheel=$(ls "$cache"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
fi
if [ -z "$wheel" ]; then
  echo "    building llama.cpp $VERSION for this CPU (once per machine: 5-8 min on 2 cores)"
  started=$(date +%s)
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  "$VPY" -m pip wheel -q --no-deps --no-cache-dir -w "$scratch" "$REQUIREMENT"
  mkdir -p "$cache"
  mv "$scratch"/llama_cpp_python-"$VERSION"-*.whl "$cache"/
  wheel=$(ls "$cache"/llama_cpp_python-"$VERSION"-*.whl | head -n1)
  seconds=$(( $(date +%s) - started ))
  # Read by bench/embedded_model.py: the one-off cost of this engine on this machine.
  printf '{"version": "%s", "seconds": %d, "built_at": "%s", "cmake_args": "%s"}\n' \
    "$VERSION" "$seconds" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$CMAKE_ARGS" > "$cache/build.json"
  echo "    built in $seconds s; cached at $cache"
fi
"$VPY" -m pip install -q --no-deps "$wheel"
if [ -n "${CALIBRATE_AFTER:-}" ] && [ -f manage.py ]; then
  # A background build: measure which engine is faster here, now that both are installed.
  "$VPY" manage.py calibrate_engine --if-needed || true
fi
