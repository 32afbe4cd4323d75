"""Pipelines: layers of variants x seeds, executors (local, Ray), analysis across seeds, report.

- `spec`: the YAML spec, its validation, and its resolution into (layer, variant, seed) runs.
- `executors`: resumable inline / local process pool / Ray execution of runs.
- `sweep`: a sweep (plan -> run -> pipeline.json); `rftlab.commands.pipeline` adds the bandit and report.
- `analysis`: per-run and per-variant metrics, bootstrap intervals, paired differences.
- `findings`: the paper's findings as claims, and verdicts by a stated rule.
- `summarize`: a pipeline directory's numbers (analysis.json), read by `rftlab.report`.
"""
