#!/usr/bin/env bash
# Runs every reliability test, slow ones included: the SIGKILL campaign on real `rftlab run` processes,
# the full-disk and read-only tmpfs tests (need root to mount; skipped otherwise), the race of two
# processes on one run, two sweeps on one directory, and the in-process fault tests. See RELIABILITY.md.
# Usage: bash scripts/fault_campaign.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider -m "" \
  tests/test_fault_campaign.py tests/test_runs.py \
  "tests/pipeline/test_pipeline_executors.py::test_a_run_held_by_another_process_is_reported_held_not_failed" \
  "tests/pipeline/test_pipeline_executors.py::test_concurrent_sweeps_on_one_directory_both_end_with_every_run_done" \
  "$@"
