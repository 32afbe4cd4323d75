"""`rftlab bandit ...`: simulate bandit counterparts of RFT runs, and the layer pipeline.

    rftlab bandit run --arms K --p0 P --optimizer sgd --lr 1.0 --advantage none --rollouts 1 \\
        --seeds 1000 --rounds 500 --out runs/bandit     -> DIR/metrics.jsonl, DIR/config.json, DIR/optimal_mass.png
    rftlab bandit pipeline --out reports/bandit [--quick] -> figures, report.html, findings.json
    rftlab bandit theory --arms K --p0 P --lr 1.0 --rounds 500 -> exact law / ODE / failure probability

`add_parser(subparsers)` wires the `bandit` command into a parent argparse parser; `main(argv)` runs
it standalone. Invalid values raise `rftlab.errors.ConfigError` (one line naming the option).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from rftlab.bandit.envs import CorrelatedEnv, KArmedEnv, SequenceEnv, check
from rftlab.bandit.optim import OPTIMIZERS, BanditOptimizer
from rftlab.bandit.pipeline import Scale, is_finished, run_counterparts
from rftlab.bandit.simulate import SimConfig, simulate
from rftlab.errors import RftlabError
from rftlab.files import REPORT_FILE
from rftlab.objectives import ADVANTAGES, LOSS_AGGREGATIONS, REWARD_DESIGNS, check_name
from rftlab.report.html import write_bandit_page


def _run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("environment")
    g.add_argument(
        "--env",
        choices=("karmed", "sequence", "correlated"),
        default="karmed",
        help="bandit kind (default karmed)",
    )
    g.add_argument("--arms", type=int, default=1000, help="K, number of arms (karmed, correlated); >= 2")
    g.add_argument("--optimal", type=int, default=1, help="number of optimal arms (default 1)")
    g.add_argument("--p0", type=float, default=0.05, help="initial optimal mass (difficulty), in (0, 1) [karmed]")
    g.add_argument("--vocab", type=int, default=16, help="V, tokens [sequence]")
    g.add_argument("--length", type=int, default=10, help="L, response length [sequence]")
    g.add_argument("--context", type=int, default=1, help="tokens of context per logit table, 0-2 [sequence]")
    g.add_argument("--rule", choices=("prefix", "sum_mod"), default="prefix", help="verifiable rule [sequence]")
    g.add_argument("--target-len", type=int, default=2, help="prefix length for rule=prefix (p0 = V^-len) [sequence]")
    g.add_argument("--modulus", type=int, default=8, help="modulus for rule=sum_mod [sequence]")
    g.add_argument("--dim", type=int, default=16, help="feature dimension d [correlated]")
    g.add_argument("--train-instances", type=int, default=1, help="training instances [correlated]")
    g.add_argument("--test-instances", type=int, default=32, help="held-out instances [correlated]")
    g.add_argument("--skill", type=float, default=0.0, help="base policy theta0 = skill * w* [correlated]")
    o = p.add_argument_group("objective")
    o.add_argument("--advantage", default="none", help=f"advantage estimator: {', '.join(sorted(ADVANTAGES))}")
    o.add_argument("--reward-design", default="binary", help=f"reward design: {', '.join(sorted(REWARD_DESIGNS))}")
    o.add_argument("--rollouts", type=int, default=1, help="G, rollouts per round (default 1)")
    o.add_argument(
        "--updates-per-batch",
        type=int,
        default=1,
        help="mu, optimizer steps per batch (ratio/clip bind when > 1)",
    )
    # --clip-eps and --clip-high: the old spellings, kept as aliases of the config's names
    o.add_argument(
        "--clip-eps-low",
        "--clip-eps",
        dest="clip_eps_low",
        type=float,
        default=0.2,
        help="PPO clip epsilon below 1, and above 1 unless --clip-eps-high (old spelling: --clip-eps)",
    )
    o.add_argument(
        "--clip-eps-high",
        "--clip-high",
        dest="clip_eps_high",
        type=float,
        default=None,
        help="clip epsilon above 1 (DAPO clip-higher; old spelling: --clip-high)",
    )
    o.add_argument("--dual-clip", type=float, default=None, help="dual-clip constant c > 1")
    o.add_argument(
        "--aggregation",
        default="token_mean",
        help=f"loss aggregation: {', '.join(sorted(LOSS_AGGREGATIONS))}",
    )
    o.add_argument("--kl-coef", type=float, default=0.0, help="KL-to-initial-policy loss weight (default 0)")
    o.add_argument(
        "--positive-weight", type=float, default=0.1, help="w_reinforce's lambda, weight of correct rollouts (0.1)"
    )
    t = p.add_argument_group("optimization")
    t.add_argument("--optimizer", default="sgd", help=f"optimizer: {', '.join(OPTIMIZERS)}")
    t.add_argument("--lr", type=float, default=1.0, help="learning rate (> 0; default 1.0)")
    t.add_argument("--weight-decay", type=float, default=0.0, help="decoupled weight decay (default 0)")
    t.add_argument("--seeds", type=int, default=1000, help="S, independent seeds simulated as one tensor dim")
    t.add_argument("--rounds", type=int, default=500, help="T, training rounds")
    t.add_argument("--seed", type=int, default=0, help="generator seed for all randomness")
    t.add_argument("--eval-every", type=int, default=1, help="record metrics every N rounds")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (small tensors: 1 is fastest)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `bandit` command (with sub-commands run, pipeline, theory) to a parent's subparsers."""
    bandit = subparsers.add_parser(
        "bandit",
        help="bandit lab: the minimalist RFT setting as a multi-armed bandit",
        description="Simulate rftlab's objectives on bandits (vectorized over seeds) and compare with theory.",
    )
    sub = bandit.add_subparsers(dest="bandit_command", required=True, metavar="{run,pipeline,theory}")
    run = sub.add_parser(
        "run", help="simulate one configuration over many seeds", description="Simulate one configuration."
    )
    _run_args(run)
    run.set_defaults(func=cmd_run)
    pipe = sub.add_parser(
        "pipeline",
        help="run the paper's layers as bandits and write a report",
        description="Layer counterparts (L0-L4, training instances, adaptive designs) over paired seeds; figures, "
        "report.html, findings.json.",
    )
    pipe.add_argument("--out", required=True, type=Path, help="output directory")
    pipe.add_argument("--quick", action="store_true", help="small scale (smoke test, ~15 s on 2 CPU cores)")
    pipe.add_argument("--seed", type=int, default=0, help="generator seed shared by all variants (paired seeds)")
    pipe.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    pipe.add_argument("--no-progress", action="store_true", help="hide progress bars")
    pipe.set_defaults(func=cmd_pipeline)
    th = sub.add_parser(
        "theory",
        help="print theory predictions for the K-armed minimalist setting",
        description="Exact law of the optimal mass (one optimal arm, G=1, {0,1}, SGD), mean-field ODE, failure probability.",
    )
    th.add_argument("--arms", type=int, default=1000, help="K, >= 2")
    th.add_argument("--p0", type=float, default=0.05, help="initial optimal mass, in (0, 1)")
    th.add_argument("--lr", type=float, default=1.0, help="SGD learning rate")
    th.add_argument("--rounds", type=int, default=500, help="T")
    th.add_argument("--rollouts", type=int, default=1, help="G (failure probability and ODE)")
    th.add_argument("--advantage", default="none", help="advantage for the ODE")
    th.add_argument("--reward-design", default="binary", help="reward design for the ODE")
    th.add_argument("--out", type=Path, default=None, help="optional directory for theory.jsonl")
    th.set_defaults(func=cmd_theory)
    return bandit


def build_env(a: argparse.Namespace):
    if a.env == "karmed":
        return KArmedEnv(arms=a.arms, optimal=a.optimal, p0=a.p0)
    if a.env == "sequence":
        return SequenceEnv(
            vocab=a.vocab,
            length=a.length,
            context=a.context,
            rule=a.rule,
            target_len=a.target_len,
            modulus=a.modulus,
        )
    return CorrelatedEnv(
        arms=a.arms,
        optimal=a.optimal,
        dim=a.dim,
        train_instances=a.train_instances,
        test_instances=a.test_instances,
        skill=a.skill,
    )


def build_config(a: argparse.Namespace) -> SimConfig:
    check(a.weight_decay >= 0, f"--weight-decay must be >= 0 (got {a.weight_decay})")
    optim = BanditOptimizer(name=a.optimizer, lr=a.lr, weight_decay=a.weight_decay)
    return SimConfig(
        rounds=a.rounds,
        rollouts=a.rollouts,
        advantage=a.advantage,
        reward_design=a.reward_design,
        updates_per_batch=a.updates_per_batch,
        clip_eps_low=a.clip_eps_low,
        clip_eps_high=a.clip_eps_low if a.clip_eps_high is None else a.clip_eps_high,
        dual_clip=a.dual_clip,
        aggregation=a.aggregation,
        kl_coef=a.kl_coef,
        positive_weight=a.positive_weight,
        optim=optim,
        eval_every=a.eval_every,
    )


def cmd_run(a: argparse.Namespace) -> int:
    check(a.seeds >= 1, f"--seeds must be >= 1 (got {a.seeds})")
    # validate everything before writing anything
    env, cfg = build_env(a), build_config(a)
    torch.set_num_threads(max(1, a.threads))
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "metrics.jsonl"
    with open(path, "w") as fh:

        def write(t: int, metrics: dict) -> None:
            row = {"round": t}
            for k, v in metrics.items():
                v = v.double()
                row[f"{k}_mean"] = float(v.mean())
                row[f"{k}_std"] = float(v.std()) if v.numel() > 1 else 0.0
            fh.write(json.dumps(row) + "\n")
            fh.flush()

        res = simulate(env, cfg, a.seeds, a.seed, progress=not a.no_progress, on_eval=write)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items() if k != "func"}
    (a.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    _plot_run(a.out, res)
    print(format_final_masses(res.metrics, cfg.rounds, a.seeds, a.env))
    print(f"-> {path}")
    return 0


def format_final_masses(metrics: dict, rounds: int, seeds: int, env: str) -> str:
    """The final optimal mass on the training instance(s) and, where the env has them, on held-out ones."""
    lines = [f"after {rounds} rounds (mean ± std over {seeds} seeds):"]
    for key, label in (("optimal_mass", "train"), ("test_optimal_mass", "held-out")):
        if key in metrics:
            final = metrics[key][-1]
            lines.append(f"  {label:<9} optimal mass {float(final.mean()):.4f} ± {float(final.std()):.4f}")
    if "test_optimal_mass" not in metrics:
        lines.append(f"  held-out  none: --env {env} has no held-out instances (--env correlated has)")
    return "\n".join(lines)


def _plot_run(out: Path, res) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name in [k for k in res.metrics if k.endswith("optimal_mass")]:
        m, s = res.mean(name), res.std(name)
        ax.plot(res.rounds, m, label=name)
        ax.fill_between(res.rounds, (m - s).clamp(0, 1), (m + s).clamp(0, 1), alpha=0.2)
    ax.set(xlabel="round", ylabel="optimal mass (mean ± std over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "optimal_mass.png", dpi=90)
    plt.close(fig)


def run_bandit_pipeline(
    out: Path, quick: bool = False, seed: int = 0, progress: bool = True, scale: Scale | None = None
) -> list[dict]:
    """The layer counterparts' data (rftlab.bandit.pipeline), then their report.html (rftlab.report.html)."""
    findings = run_counterparts(out, quick=quick, seed=seed, progress=progress, scale=scale)
    write_bandit_page(out)
    return findings


def ensure_counterparts(out: Path, quick: bool = False, seed: int = 0, progress: bool = True) -> bool:
    """Run the bandit pipeline into `out` unless a finished one of that scale and seed is there; True if it ran."""
    if is_finished(out, quick=quick, seed=seed):
        return False
    run_bandit_pipeline(out, quick=quick, seed=seed, progress=progress)
    return True


def cmd_pipeline(a: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, a.threads))
    findings = run_bandit_pipeline(a.out, quick=a.quick, seed=a.seed, progress=not a.no_progress)
    smoke, width = (", smoke only", 24) if a.quick else ("", 12)
    for f in findings:
        print(f"[{f['verdict'] + smoke:>{width}}] {f['layer']}: {f['finding'][:110]}")
    if a.quick:
        print(f"({findings[0]['caveat'] if findings else 'quick scale: a smoke test'})")
    print(f"report: {a.out / REPORT_FILE}")
    return 0


def cmd_theory(a: argparse.Namespace) -> int:
    from rftlab.bandit.theory import failure_probability, mean_field_trajectory, minimalist_exact

    check(a.arms >= 2, f"--arms must be an integer >= 2 (got {a.arms})")
    check(0.0 < a.p0 < 1.0, f"--p0 must be in the open interval (0, 1) (got {a.p0})")
    check(a.rounds >= 1, f"--rounds must be >= 1 (got {a.rounds})")
    check_name(ADVANTAGES, "--advantage", a.advantage)
    check_name(REWARD_DESIGNS, "--reward-design", a.reward_design)
    exact = minimalist_exact(a.arms, a.p0, a.lr, a.rounds)
    ode = mean_field_trajectory(a.p0, a.arms, a.lr, a.rounds, a.rollouts, a.advantage, a.reward_design)
    rows = [
        {
            "round": t,
            "exact_mean": float(exact["mean"][t]),
            "exact_std": float(exact["std"][t]),
            "p_no_success": float(exact["p_no_success"][t]),
            "ode": float(ode[t]),
        }
        for t in range(a.rounds + 1)
    ]
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "theory.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(
        f"K-armed minimalist bandit: K={a.arms} arms, one optimal, p0={a.p0:g}, SGD lr {a.lr:g}, "
        f"{a.rounds} rounds; the ODE with G={a.rollouts}, advantage {a.advantage}, reward {a.reward_design}"
    )
    print(
        "  exact: mean ± std of the optimal mass under the exact law (G=1, {0,1} reward); ode: the mean-field "
        "ODE; P(no success): no correct rollout so far"
    )
    for t in sorted({0, a.rounds // 4, a.rounds // 2, a.rounds}):
        r = rows[t]
        print(
            f"round {t:>6}: exact {r['exact_mean']:.4f} ± {r['exact_std']:.4f}  ode {r['ode']:.4f}  P(no success) {r['p_no_success']:.4f}"
        )
    print(
        f"P(no correct rollout in {a.rounds} rounds, G={a.rollouts}) = {failure_probability(a.p0, a.rounds, a.rollouts):.6g}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: `python -m rftlab.commands.bandit run ...` (same as `rftlab bandit run ...`)."""
    parser = argparse.ArgumentParser(prog="rftlab", description="rftlab bandit lab")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_parser(subparsers)
    args = parser.parse_args(["bandit", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except RftlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["add_parser", "main"]
