"""The bandit pipeline's data: figures (matplotlib PNG), findings.json, then bandit.json.

The figures share the LLM pipeline report's look (`rftlab.plotting.style_axes`). Rendering HTML is
the report's job: `rftlab.report.html` draws these figures and findings as the bandit pipeline's own
report.html and next to the LLM layers in `rftlab report DIR --bandit BANDIT_DIR`. bandit.json
(written last, so it marks a finished run) lists the figures per layer, the scale, the seed, and each
finding's claim and rule as separate fields.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from rftlab.bandit.theory import failure_probability  # noqa: E402
from rftlab.files import BANDIT_MANIFEST, FINDINGS_FILE, write_atomic  # noqa: E402
from rftlab.plotting import save_figure, style_axes  # noqa: E402
from rftlab.verdicts import smoke_caveat  # noqa: E402

N_TRACES = 8  # individual seed trajectories drawn in thin lines
# figure file (without .png) per layer id of rftlab.bandit.pipeline's findings
FIGURES = {
    "L0": "l0_minimalist",
    "L1": "l1_advantage",
    "L2": "l2_rollouts",
    "L3": "l3_reward_design",
    "L4": "l4_difficulty",
    "next": "instances",
    "adaptive": "adaptive",
}


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
    ax.fill_between(x, (m - s).clamp(0, 1), (m + s).clamp(0, 1), color=line.get_color(), alpha=0.15, lw=0)
    if traces:
        for i in range(min(N_TRACES, res.metrics[name].shape[1])):
            ax.plot(x, res.metrics[name][:, i], color=line.get_color(), lw=0.6, alpha=0.3)


def _save(fig, out: Path, layer: str) -> Path:
    return save_figure(fig, out / f"{FIGURES[layer]}.png")


def figures(out: Path, curves: dict) -> list[tuple[str, str, Path]]:
    """One PNG per layer; returns (layer id, caption, path)."""
    figs = []
    # L0
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    r0, th = curves["L0"]["karmed"], curves["L0"]["theory"]
    _band(axes[0], r0, label="simulated mean ± std", traces=True)
    axes[0].plot(range(len(th["mean"])), th["mean"], "k--", label="exact law (theory)")
    axes[0].plot(range(len(curves["ode"])), curves["ode"], "k:", label="mean-field ODE")
    style_axes(axes[0], "round", "optimal mass (train Pass@1)", title="L0 K-armed minimalist", legend=True)
    c0 = curves["L0"]["correlated"]
    _band(axes[1], c0, "optimal_mass", "train instance", traces=True)
    _band(axes[1], c0, "test_optimal_mass", "held-out instances", traces=True)
    style_axes(axes[1], "round", title="L0 correlated family: train vs held-out", legend=True)
    figs.append(("L0", "minimalist (thin lines: single seeds)", _save(fig, out, "L0")))
    # L1
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, name in zip(axes, ("karmed", "correlated"), strict=True):
        none_r, grpo_r = curves["L1"][name]
        _band(ax, none_r, label="none (G=4)", traces=True)
        _band(ax, grpo_r, label="grpo (G=4)", traces=True)
        if name == "correlated":
            _band(ax, none_r, "test_optimal_mass", "none: held-out")
            _band(ax, grpo_r, "test_optimal_mass", "grpo: held-out")
        style_axes(ax, "round", "optimal mass", title=f"L1 advantage [{name}]", legend=True)
    figs.append(("L1", "GRPO vs raw reward", _save(fig, out, "L1")))
    # L2
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for g, r in curves["L2"]["karmed"].items():
        _band(axes[0], r, label=f"G={g}")
        _band(axes[1], r, label=f"G={g}", x_scale=g)
    for g, r in curves["L2"]["correlated"].items():
        _band(axes[2], r, "test_optimal_mass", f"G={g}: held-out")
    style_axes(axes[0], "round", "optimal mass", title="L2 per round", legend=True)
    style_axes(axes[1], "rollouts (samples)", title="L2 per sample", legend=True)
    axes[1].set_xscale("log")
    style_axes(axes[2], "round", title="L2 generalization [correlated]", legend=True)
    figs.append(("L2", "rollouts per round", _save(fig, out, "L2")))
    # L3
    l3 = curves["L3"]
    fig, axes = plt.subplots(1, len(l3), figsize=(3.2 * len(l3), 3.4))
    for ax, (label, res) in zip(axes, l3.items(), strict=True):
        for design, r in res.items():
            _band(ax, r, label=design)
        style_axes(ax, "round", title=f"L3 {label}", legend=True)
    axes[0].set_ylabel("optimal mass")
    figs.append(("L3", "reward designs", _save(fig, out, "L3")))
    # L4
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    p0s = list(curves["L4"])
    sim_fail = [float((r.metrics["successes"][-1] == 0).float().mean()) for r in curves["L4"].values()]
    rounds = curves["L4"][p0s[0]].rounds[-1]
    axes[0].plot(p0s, sim_fail, "o", label="simulated")
    grid = torch.logspace(-5, -1, 50)
    axes[0].plot(grid, [failure_probability(float(p), rounds) for p in grid], "k--", label="(1-p0)^T")
    style_axes(axes[0], "p0", "probability", title=f"L4 P(no success in {rounds} rounds)", legend=True)
    axes[0].set_xscale("log")
    for p, r in curves["L4"].items():
        _band(axes[1], r, label=f"p0={p:g}")
    style_axes(axes[1], "round", "optimal mass", title="L4 difficulty", legend=True)
    figs.append(("L4", "difficulty", _save(fig, out, "L4")))
    # instances
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for n, r in curves["instances"].items():
        _band(ax, r, "test_optimal_mass", f"{n} train instances: held-out")
    style_axes(ax, "round", "held-out optimal mass", title="training instances [correlated]", legend=True)
    figs.append(("next", "number of training instances", _save(fig, out, "next")))
    if "adaptive" in curves:
        figs.append(_adaptive_figure(out, curves["adaptive"]))
    return figs


def _adaptive_figure(out: Path, runs: dict) -> tuple[str, str, Path]:
    """Adaptive designs: K-armed train mass per round and per rollout, correlated held-out mass."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, res in runs.items():
        karmed = res["karmed"]
        rollouts = karmed.config.rollouts
        _band(axes[0], karmed, label=name)
        _band(axes[1], karmed, label=name, x_scale=rollouts)
        _band(axes[2], res["correlated"], "test_optimal_mass", name)
    style_axes(axes[0], "round", "optimal mass", title="adaptive designs [K-armed]", legend=True)
    style_axes(axes[1], "rollouts (samples)", title="per sample [K-armed]", legend=True)
    axes[1].set_xscale("log")
    style_axes(axes[2], "round", "held-out optimal mass", title="generalization [correlated]", legend=True)
    return "adaptive", "adaptive reward/advantage designs vs the minimalist", _save(fig, out, "adaptive")


# what every finding of the quick scale carries: it is a smoke test, not evidence
QUICK_MARKS = {"quick": True, "caveat": smoke_caveat("the bandit pipeline's quick scale")}


def write_results(
    out: Path, findings: list, curves: dict, scale: dict | None = None, seed: int | None = None, quick: bool = False
) -> Path:
    """Write findings.json and the figures, then bandit.json (the finished mark) into `out`; its path.

    `findings`: rftlab.bandit.pipeline.BanditFinding records. bandit.json also lists each one's claim
    and rule text as separate fields, so the report never parses them out of the finding's text.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    marks = QUICK_MARKS if quick else {}
    (out / FINDINGS_FILE).write_text(json.dumps([{**f.to_json(), **marks} for f in findings], indent=2) + "\n")
    manifest = {
        "scale": scale or {},
        "quick": quick,
        "seed": seed,
        "figures": [{"layer": layer, "caption": cap, "file": p.name} for layer, cap, p in figures(out, curves)],
        "claims": [{"claim": f.claim, "rule": f.rule_text} for f in findings],
    }
    write_atomic(out / BANDIT_MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return out / BANDIT_MANIFEST
