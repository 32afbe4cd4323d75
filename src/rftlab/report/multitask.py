"""The report's multi-task block: each task's own test Pass@1, per variant, with a figure.

A layer whose runs evaluated named tasks (data.mix) gets, under its generic section, a figure with
one panel per task (test Pass@1 on that task's test set vs round, mean over seeds with a 95%
bootstrap band), a table of each task's base / final / gain per variant, and a reading of the
layer's per-task claims (metric `<metric>:<task>`) in words: for a `differs` claim, *helps* when
the paired interval lies above 0, *hurts* when below, *no change* when within the threshold;
for a `gt` / `lt` claim, the verdict itself. The words come from the intervals, never by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rftlab.pipeline.analysis import RunCurve, mean_curve, on_task  # noqa: E402
from rftlab.plotting import COLORS, save_figure, style_axes  # noqa: E402
from rftlab.report.cells import escape as _e  # noqa: E402
from rftlab.report.cells import estimate_cell  # noqa: E402


def layer_tasks(groups: dict[str, Sequence[RunCurve]]) -> list[str]:
    """The tasks any run of the layer evaluated, sorted (empty: not a multi-task layer)."""
    return sorted({t for curves in groups.values() for c in curves for t in c.task_test})


def plot_tasks(groups: dict[str, Sequence[RunCurve]], path: str | Path, *, title: str = "") -> Path:
    """One panel per task: its test Pass@1 vs round, one color per variant (variants that evaluated it)."""
    tasks = layer_tasks(groups)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.8), dpi=100, sharey=True, squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for i, (name, curves) in enumerate(groups.items()):
            views = [on_task(c, task) for c in curves if task in c.task_test]
            if not views:
                continue
            color = COLORS[i % len(COLORS)]
            trained = any(task in c.task_train for c in curves)
            for v in views:  # thin per-seed lines
                ax.plot(v.rounds, v.test, color=color, lw=0.6, alpha=0.3)
            xs, mean, low, high = mean_curve(views, x="rounds", y="test")
            label = f"{name} ({'trained on' if trained else 'evaluated only'}, n={len(views)})"
            ax.plot(xs, mean, color=color, lw=2, marker="o", ms=2.5, ls="-" if trained else "--", label=label)
            ax.fill_between(xs, low, high, color=color, alpha=0.15, lw=0)
        style_axes(ax, "round", f"test Pass@1 on task {task}")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title + "   (each task's own test set; dashed: a variant that never trains on the task)", fontsize=10)
    return save_figure(fig, path)


def tasks_table(layer: dict, tasks: list[str]) -> str:
    """Per variant and task: test Pass@1 base, final and gain (95% bootstrap intervals over seeds)."""
    head = "".join(f'<th colspan="3">task {_e(t)}</th>' for t in tasks)
    sub = "".join("<th>base</th><th>final</th><th>gain</th>" for _ in tasks)
    rows = []
    for v in layer["variants"]:
        per = v.get("tasks") or {}
        cells = "".join(
            estimate_cell(per.get(t, {}).get("test_base"), show_n=False)
            + estimate_cell(per.get(t, {}).get("test_final"), show_n=False)
            + estimate_cell(per.get(t, {}).get("test_gain"), signed=True, show_n=False)
            for t in tasks
        )
        rows.append(f"<tr><td><b>{_e(v['name'])}</b></td>{cells}</tr>")
    return (
        '<div class="scroll"><table><tr><th rowspan="2">variant</th>'
        + head
        + f"</tr><tr>{sub}</tr>"
        + "".join(rows)
        + "</table></div>"
    )


def reading(number: dict) -> str:
    """A per-task claim's statistic in words: helps / hurts / no change / transfers / ..., from its interval."""
    low, high, t, rule = number.get("low"), number.get("high"), number.get("threshold", 0.0), number["rule"]
    if low is None or high is None or number.get("n", 0) < 3:
        return "inconclusive"
    if rule == "differs":
        if low > 0:
            return "helps"
        if high < 0:
            return "hurts"
        return "no change" if -t <= low and high <= t else "inconclusive"
    return number.get("verdict", "inconclusive")


def readings_table(layer: dict) -> str:
    rows = []
    for f in layer["findings"]:
        for n in f["numbers"]:
            if ":" not in n["metric"]:
                continue
            rows.append(
                f"<tr><td>{_e(f['finding'])}</td><td>{_e(n['text'])}</td>"
                f'<td class="verdict {_e(n["verdict"])}">{_e(reading(n))}</td></tr>'
            )
    if not rows:
        return ""
    return (
        "<p>Per-task claims read from their intervals (differs: <i>helps</i> if the paired interval lies above 0, "
        "<i>hurts</i> if below, <i>no change</i> if within the threshold):</p>"
        "<table><tr><th>claim</th><th>what our data say</th><th>reading</th></tr>" + "".join(rows) + "</table>"
    )


def multitask_block(layer: dict, groups: dict[str, Sequence[RunCurve]], figure: Path, png_tag) -> str:
    """The block under a layer's section, or "" when none of its runs evaluated named tasks."""
    tasks = layer_tasks(groups)
    if not tasks:
        return ""
    png = plot_tasks(groups, figure, title=f"{layer['name']}: test Pass@1 per task")
    return (
        "<h3>Per task</h3>"
        + png_tag(png, f"{layer['name']} per task")
        + tasks_table(layer, tasks)
        + readings_table(layer)
    )
