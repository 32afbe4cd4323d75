"""Pipelines: layers of variants x seeds, executors (local, Ray), analysis across seeds, report.

- `spec`: the YAML spec, its validation, and its resolution into (layer, variant, seed) runs.
- `executors`: resumable inline / local process pool / Ray execution of runs.
- `sweep`: a pipeline end to end (plan -> run -> report).
- `analysis`: per-run and per-variant metrics, bootstrap intervals, paired differences.
- `findings`: the paper's findings as claims, and verdicts by a stated rule.
- `summarize`, `compare`, `cli`.
"""
