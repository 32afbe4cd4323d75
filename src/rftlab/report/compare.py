"""`rftlab compare RUN RUN ...`: a table and a figure of several run directories, side by side."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from rftlab.errors import RftlabError
from rftlab.pipeline import analysis

COLUMNS = [
    ("rounds", "rounds", "{:.0f}"),
    ("rollouts_total", "rollouts", "{:.0f}"),
    ("train_base", "train base", "{:.3f}"),
    ("train_final", "train final", "{:.3f}"),
    ("conv_round", "round >= 0.9", "{:.0f}"),
    ("conv_rollouts", "rollouts >= 0.9", "{:.0f}"),
    ("auc_rollouts", "AUC(rollouts)", "{:.3f}"),
    ("test_base", "test base", "{:.3f}"),
    ("test_final", "test final", "{:.3f}"),
    ("test_best", "test best", "{:.3f}"),
    ("test_max_drop", "test max drop", "{:.3f}"),
]


def compare_runs(paths: list[str], figure: str | Path | None = None) -> tuple[str, Path | None]:
    """(a plain-text table, the figure's path). AUC uses the smallest budget among the runs."""
    curves = []
    for p in paths:
        path = Path(p)
        if not (path / "metrics.jsonl").is_file():
            raise RftlabError(f"{p} is not a run directory (no metrics.jsonl)")
        try:
            curves.append(analysis.load_run(path))
        except ValueError as err:
            raise RftlabError(str(err)) from None
    labels = _labels(paths)
    ctx = analysis.layer_context({"all": curves})
    header = ["run"] + [c[1] for c in COLUMNS]
    rows = []
    for c, label in zip(curves, labels, strict=True):
        row = [label]
        for metric, _, fmt in COLUMNS:
            value = analysis.seed_values([c], metric, ctx)[0]
            row.append(
                "never"
                if metric.startswith("conv") and value != value
                else "–"
                if value != value
                else fmt.format(value)
            )
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"(AUC over the first {ctx.rollout_horizon:.0f} rollouts, the smallest budget here)"
        if ctx.rollout_horizon
        else ""
    )
    path = None
    if figure is not None:
        from rftlab.report.sweep_figures import plot_compare

        path = plot_compare(curves, labels, figure)
    return "\n".join(lines).rstrip(), path


# config keys that define the task a run is scored on: runs that differ in one are not comparable
TASK_KEYS = (
    ("data", "dataset"),
    ("data", "train_split"),
    ("data", "test_split"),
    ("data", "test_size"),
    ("data", "answer_format"),
    ("data", "prompt_style"),
    ("eval", "test_mode"),
)


def task_differences(paths: list[str]) -> list[str]:
    """One warning line per task key (dataset, splits, test size, answer format, test mode) on which the
    runs' config.yaml files differ; a run without a readable config.yaml is left out."""
    labels = _labels(paths)
    configs = {}
    for p, label in zip(paths, labels, strict=True):
        try:
            configs[label] = yaml.safe_load((Path(p) / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            continue
    warnings = []
    for group, key in TASK_KEYS:
        values: dict[str, list[str]] = {}
        for label, cfg in configs.items():
            value = (cfg or {}).get(group, {}).get(key) if isinstance(cfg, dict) else None
            values.setdefault(repr(value) if not isinstance(value, str) else value, []).append(label)
        if len(values) > 1:
            parts = "; ".join(f"{v} ({', '.join(labels_)})" for v, labels_ in values.items())
            warnings.append(f"warning: the runs differ in {group}.{key}: {parts}; their Pass@1 are not comparable")
    return warnings


def default_figure_path(paths: list[str]) -> Path:
    """compare.png in the runs' common parent folder (not the current folder)."""
    return Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths])) / "compare.png"


def _labels(paths: list[str]) -> list[str]:
    names = [Path(p).resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(Path(p)) for p in paths]
