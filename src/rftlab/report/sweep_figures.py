"""Figures of sweeps: per layer, Pass@1 vs round and vs rollouts (mean with band, thin per-seed lines).

Their look (`style_axes`, `save_figure`) comes from rftlab.plotting, which the bandit lab's figures
use too, so both sit side by side in the pipeline report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rftlab.pipeline.analysis import RunCurve, mean_curve  # noqa: E402
from rftlab.plotting import COLORS, save_figure, style_axes  # noqa: E402


def plot_layer(groups: dict[str, Sequence[RunCurve]], path: str | Path, *, title: str = "") -> Path:
    """2 x 2: train / test Pass@1 against round / rollouts consumed, one color per variant."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=100, sharey=True)
    panels = [
        ("train", "rounds", "train-example Pass@1", "round"),
        ("test", "rounds", "test Pass@1", "round"),
        ("train", "rollouts", "train-example Pass@1", "rollouts consumed"),
        ("test", "rollouts", "test Pass@1", "rollouts consumed"),
    ]
    drawn = False
    for ax, (y, x, ylabel, xlabel) in zip(axes.flat, panels, strict=True):
        for i, (name, curves) in enumerate(groups.items()):
            if not curves:
                continue
            drawn = True
            color = COLORS[i % len(COLORS)]
            for c in curves:  # thin per-seed lines
                ax.plot(getattr(c, x), getattr(c, y), color=color, lw=0.6, alpha=0.3)
            xs, mean, low, high = mean_curve(curves, x=x, y=y)
            ax.plot(xs, mean, color=color, lw=2, marker="o", ms=2.5, label=f"{name} (n={len(curves)})")
            ax.fill_between(xs, low, high, color=color, alpha=0.15, lw=0)
        style_axes(ax, xlabel, ylabel)
        if x == "rollouts" and any(len(cs) for cs in groups.values()):
            top = max((c.rollouts[-1] for cs in groups.values() for c in cs), default=1)
            if top > 50 * max(
                1, min((c.rollouts[-1] for cs in groups.values() for c in cs if c.rollouts[-1] > 0), default=1)
            ):
                ax.set_xscale("symlog", linthresh=1)
    if drawn:
        axes[0, 0].legend(fontsize=7, loc="best")
    else:
        for ax in axes.flat:
            ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title + "   (lines: mean over seeds with 95% bootstrap band; thin: single seeds)", fontsize=10)
    return save_figure(fig, path)


def plot_compare(curves: Sequence[RunCurve], labels: Sequence[str], path: str | Path) -> Path:
    """Several runs side by side: train and test Pass@1 vs round and vs rollouts."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=100, sharey=True)
    panels = [("train", "rounds"), ("test", "rounds"), ("train", "rollouts"), ("test", "rollouts")]
    for ax, (y, x) in zip(axes.flat, panels, strict=True):
        for i, (c, label) in enumerate(zip(curves, labels, strict=True)):
            ax.plot(getattr(c, x), getattr(c, y), marker="o", ms=2.5, color=COLORS[i % len(COLORS)], label=label)
        style_axes(ax, "round" if x == "rounds" else "rollouts consumed", f"{y} Pass@1")
    axes[0, 0].legend(fontsize=7, loc="best")
    return save_figure(fig, path)
