"""Plot helpers shared by the trainer (a run's figure), the bandit lab and the pipeline report.

A leaf: matplotlib only (headless, the Agg backend), so the trainer and the bandit simulator can
draw without importing the report. `style_axes` and `save_figure` give every figure one look.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = plt.get_cmap("tab10").colors


def style_axes(
    ax, xlabel: str = "", ylabel: str = "", *, title: str = "", unit_y: bool = True, legend: bool = False
) -> None:
    """The look shared by every report figure (LLM sweeps and bandit counterparts): labels, grid, y in [0, 1]."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if unit_y:
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="best")


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write (PNG, 100 dpi) and close a report figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_run(rows: list[dict], path: str | Path, *, title: str = "") -> Path:
    """Train-example and test Pass@1 vs round, with their 95% intervals, and the per-round reward."""
    evals = [r for r in rows if r.get("split") == "eval"]
    train_rows = [r for r in rows if r.get("split") == "train_round"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    rounds = [r["round"] for r in evals]
    for key, label, color in [
        ("train", "train example Pass@1", "tab:blue"),
        ("test", "test Pass@1", "tab:orange"),
    ]:
        ax.plot(rounds, [r[f"{key}/pass_at_1"] for r in evals], marker="o", ms=3, color=color, label=label)
        ax.fill_between(
            rounds,
            [r[f"{key}/pass_at_1_low"] for r in evals],
            [r[f"{key}/pass_at_1_high"] for r in evals],
            color=color,
            alpha=0.15,
        )
    if train_rows:
        window = max(1, len(train_rows) // 20)
        correct = [r["correct/mean"] for r in train_rows]
        smooth = [
            sum(correct[max(0, i - window + 1) : i + 1]) / len(correct[max(0, i - window + 1) : i + 1])
            for i in range(len(correct))
        ]
        ax.plot(
            [r["round"] for r in train_rows],
            smooth,
            color="tab:gray",
            lw=1,
            alpha=0.7,
            label=f"rollout correct (moving mean of {window})",
        )
    ax.set_xlabel("round")
    ax.set_ylabel("Pass@1")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
