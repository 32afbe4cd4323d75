#!/usr/bin/env bash
# GPU checks, ready to run on a CUDA machine: the gpu-marked tests, then the per-architecture round
# benchmark (seconds per minimalist round at 1024-token responses, rollout tokens/s, peak memory next
# to the plan's estimate) for Qwen2.5-1.5B, Llama-3.2-1B and OLMo-2-1B at their real sizes, random
# init from the architecture configs shipped in rftlab/builtin/arch/ (no hub needed).
#
#   bash scripts/gpu_check.sh                 # writes gpu_check/gpu_tests.log, gpu_round.md, gpu_round.json
#   bash scripts/gpu_check.sh --cpu-tiny      # the same steps on CPU with tiny models (what a CPU test runs)
#
# Env: PYTHON (default .venv/bin/python, else python), OUT (default gpu_check/), ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
OUT="${OUT:-gpu_check}"
ROUNDS="${ROUNDS:-3}"
mkdir -p "$OUT"

if [ "${1:-}" = "--cpu-tiny" ]; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  echo "== plan of the GPU recipe (no weights loaded)"
  "$PYTHON" -m rftlab.cli plan configs/gpu/qwen2.5-1.5b-instruct-gsm8k.yaml --device cuda --memory 80 | tee "$OUT/plan.txt"
  echo "== round benchmark, tiny models on CPU"
  "$PYTHON" benchmarks/gpu_round.py --device cpu --tiny --rounds "${ROUNDS}" --out "$OUT/gpu_round.md" --json "$OUT/gpu_round.json"
  exit 0
fi

"$PYTHON" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device (torch %s); use --cpu-tiny on CPU" % torch.__version__)
print("== device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv 2>/dev/null | tee "$OUT/nvidia-smi.csv" || true

echo "== plan of the GPU recipes (no weights loaded)"
for f in configs/gpu/*.yaml; do
  "$PYTHON" -m rftlab.cli plan "$f" --device cuda | tail -5
done | tee "$OUT/plans.txt"

echo "== gpu-marked tests"
status=0
"$PYTHON" -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" || status=$?

echo "== round benchmark at real size (random init), 1024-token responses"
"$PYTHON" benchmarks/gpu_round.py --device cuda --rounds "${ROUNDS}" --out "$OUT/gpu_round.md" --json "$OUT/gpu_round.json"
cat "$OUT/gpu_round.md"
exit $status
