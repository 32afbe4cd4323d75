"""Figure of Pass@1 = format rate x accuracy among well-formed answers over rounds, per variant.

Drawn for layers whose claims are about the decomposition (the `controls` layer), so a reader sees
which factor moved: the share of well-formed answers or the accuracy among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rftlab.pipeline.analysis import RunCurve  # noqa: E402
from rftlab.plotting import COLORS, save_figure, style_axes  # noqa: E402

PANELS = (
    ("test/pass_at_1", "test Pass@1"),
    ("test/format_rate", "test format rate (well-formed answers)"),
    ("test/accuracy_given_format", "test accuracy among well-formed answers"),
)


def _mean_over_seeds(curves: Sequence[RunCurve], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(rounds all seeds share, nan-mean over seeds of `key` there)."""
    common = sorted(set.intersection(*(set(c.rounds.tolist()) for c in curves)))
    mat = np.array([[c.extra[key][np.searchsorted(c.rounds, r)] for r in common] for c in curves])  # (S, E)
    with np.errstate(all="ignore"):
        mean = np.nanmean(mat, axis=0) if np.isfinite(mat).any() else np.full(len(common), np.nan)
    return np.array(common), mean


def plot_decomposition(groups: dict[str, Sequence[RunCurve]], path: str | Path, *, title: str = "") -> Path:
    """1 x 3: test Pass@1, format rate and accuracy among well-formed answers vs round, a color per variant."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=100, sharey=True)
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        for i, (name, curves) in enumerate(groups.items()):
            curves = [c for c in curves if key in c.extra]
            if not curves:
                continue
            color = COLORS[i % len(COLORS)]
            for c in curves:  # thin per-seed lines
                ax.plot(c.rounds, c.extra[key], color=color, lw=0.6, alpha=0.3)
            xs, mean = _mean_over_seeds(curves, key)
            ax.plot(xs, mean, color=color, lw=2, marker="o", ms=2.5, label=f"{name} (n={len(curves)})")
        style_axes(ax, "round", label)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title + "   Pass@1 = format rate x accuracy (lines: mean over seeds; thin: single seeds)", fontsize=10)
    return save_figure(fig, path)
