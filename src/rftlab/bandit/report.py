"""Figures (matplotlib PNG), a self-contained HTML report (PNGs embedded) and findings.json.

Kept self-contained so it can be merged into the LLM pipeline's report module later: it only needs
`findings` (list of {finding, layer, verdict, numbers}) and per-layer `SimResult` curves.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

N_TRACES = 8  # individual seed trajectories drawn in thin lines


def _band(
    ax,
    res,
    name: str = "optimal_mass",
    label: str = "",
    color=None,
    x_scale: float = 1.0,
    traces: bool = False,
):
    x = torch.tensor(res.rounds, dtype=torch.float32) * x_scale
    m, s = res.mean(name), res.std(name)
    (line,) = ax.plot(x, m, label=label, color=color, lw=2)
    ax.fill_between(x, (m - s).clamp(0, 1), (m + s).clamp(0, 1), color=line.get_color(), alpha=0.15)
    if traces:
        for i in range(min(N_TRACES, res.metrics[name].shape[1])):
            ax.plot(x, res.metrics[name][:, i], color=line.get_color(), lw=0.5, alpha=0.5)


def _save(fig, out: Path, name: str) -> Path:
    path = out / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def figures(out: Path, curves: dict) -> list[tuple[str, Path]]:
    """One PNG per layer; returns (caption, path)."""
    figs = []
    # L0
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    r0, th = curves["L0"]["karmed"], curves["L0"]["theory"]
    _band(axes[0], r0, label="simulated mean ± std", traces=True)
    axes[0].plot(range(len(th["mean"])), th["mean"], "k--", label="exact law (theory)")
    axes[0].plot(range(len(curves["ode"])), curves["ode"], "k:", label="mean-field ODE")
    axes[0].set(title="L0 K-armed minimalist", xlabel="round", ylabel="optimal mass (train Pass@1)")
    axes[0].legend(fontsize=7)
    c0 = curves["L0"]["correlated"]
    _band(axes[1], c0, "optimal_mass", "train instance", traces=True)
    _band(axes[1], c0, "test_optimal_mass", "held-out instances", traces=True)
    axes[1].set(title="L0 correlated family: train vs held-out", xlabel="round")
    axes[1].legend(fontsize=7)
    figs.append(("L0: minimalist (thin lines: single seeds)", _save(fig, out, "l0_minimalist")))
    # L1
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, name in zip(axes, ("karmed", "correlated"), strict=True):
        none_r, grpo_r = curves["L1"][name]
        _band(ax, none_r, label="none (G=4)", traces=True)
        _band(ax, grpo_r, label="grpo (G=4)", traces=True)
        if name == "correlated":
            _band(ax, none_r, "test_optimal_mass", "none: held-out")
            _band(ax, grpo_r, "test_optimal_mass", "grpo: held-out")
        ax.set(title=f"L1 advantage [{name}]", xlabel="round", ylabel="optimal mass")
        ax.legend(fontsize=7)
    figs.append(("L1: GRPO vs raw reward", _save(fig, out, "l1_advantage")))
    # L2
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for g, r in curves["L2"]["karmed"].items():
        _band(axes[0], r, label=f"G={g}")
        _band(axes[1], r, label=f"G={g}", x_scale=g)
    for g, r in curves["L2"]["correlated"].items():
        _band(axes[2], r, "test_optimal_mass", f"G={g}: held-out")
    axes[0].set(title="L2 per round", xlabel="round", ylabel="optimal mass")
    axes[1].set(title="L2 per sample", xlabel="rollouts (samples)", xscale="log")
    axes[2].set(title="L2 generalization [correlated]", xlabel="round")
    for ax in axes:
        ax.legend(fontsize=7)
    figs.append(("L2: rollouts per round", _save(fig, out, "l2_rollouts")))
    # L3
    l3 = curves["L3"]
    fig, axes = plt.subplots(1, len(l3), figsize=(3.2 * len(l3), 3.4))
    for ax, (label, res) in zip(axes, l3.items(), strict=True):
        for design, r in res.items():
            _band(ax, r, label=design)
        ax.set(title=f"L3 {label}", xlabel="round")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("optimal mass")
    figs.append(("L3: reward designs", _save(fig, out, "l3_reward_design")))
    # L4
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    from rftlab.bandit.theory import failure_probability

    p0s = list(curves["L4"])
    sim_fail = [float((r.metrics["successes"][-1] == 0).float().mean()) for r in curves["L4"].values()]
    rounds = curves["L4"][p0s[0]].rounds[-1]
    axes[0].plot(p0s, sim_fail, "o", label="simulated")
    grid = torch.logspace(-5, -1, 50)
    axes[0].plot(grid, [failure_probability(float(p), rounds) for p in grid], "k--", label="(1-p0)^T")
    axes[0].set(xscale="log", title=f"L4 P(no success in {rounds} rounds)", xlabel="p0")
    axes[0].legend(fontsize=7)
    for p, r in curves["L4"].items():
        _band(axes[1], r, label=f"p0={p:g}")
    axes[1].set(title="L4 difficulty", xlabel="round", ylabel="optimal mass")
    axes[1].legend(fontsize=7)
    figs.append(("L4: difficulty", _save(fig, out, "l4_difficulty")))
    # instances
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for n, r in curves["instances"].items():
        _band(ax, r, "test_optimal_mass", f"{n} train instances: held-out")
    ax.set(title="training instances [correlated]", xlabel="round", ylabel="held-out optimal mass")
    ax.legend(fontsize=7)
    figs.append(("Number of training instances", _save(fig, out, "instances")))
    return figs


def write_report(out: Path, findings: list[dict], curves: dict, scale: dict | None = None) -> Path:
    """Write figures, findings.json and report.html (PNGs embedded as base64) into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "findings.json").write_text(json.dumps(findings, indent=2) + "\n")
    figs = figures(out, curves)
    colors = {"agrees": "#2a7", "disagrees": "#c33", "inconclusive": "#888"}
    rows = "\n".join(
        f"<tr><td>{html.escape(f['layer'])}</td><td>{html.escape(f['finding'])}</td>"
        f"<td style='color:{colors[f['verdict']]};font-weight:bold'>{f['verdict']}</td>"
        f"<td><pre>{html.escape(json.dumps(f['numbers'], indent=1))}</pre></td></tr>"
        for f in findings
    )
    images = "\n".join(
        f"<h3>{html.escape(cap)}</h3><img src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
        for cap, p in figs
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>rftlab bandit report</title>
<style>body{{font-family:sans-serif;max-width:1300px;margin:auto}} td{{vertical-align:top;border-top:1px solid #ccc;padding:4px}}
pre{{font-size:11px;max-width:520px;white-space:pre-wrap}} img{{max-width:100%}}</style></head><body>
<h1>Bandit counterparts of the paper's layers</h1>
<p>Simulated with rftlab.bandit on rftlab.objectives (paired seeds; intervals are 99% paired normal
intervals). Scale: {html.escape(json.dumps(scale or {}))}. Verdicts follow fixed rules stated in each
finding; they describe this bandit model, not the LLM experiments.</p>
<table><tr><th>layer</th><th>finding</th><th>verdict</th><th>numbers</th></tr>
{rows}
</table>
{images}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
