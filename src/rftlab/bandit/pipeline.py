"""The LLM pipeline's layers, re-run as bandits over paired seeds, compared with the paper's findings.

Each layer varies one design choice, everything else at the minimalist configuration (rewards
{0, 1}, advantage `none`, G = 1, mu = 1, SGD). Variants of a layer share `seed`, so they start from
the same policies and draw from the same generator stream (paired seeds); differences are judged by
a paired confidence interval (mean +- z * standard error of the per-seed difference).

Verdicts are computed from the numbers by fixed rules stated next to each finding, not chosen:
`agrees` when the interval supports the paper's direction by a margin `delta`, `disagrees` when it
rules that out, `inconclusive` otherwise. The bandit is a model of the LLM setting, not the setting:
a verdict says what the model shows under these settings, nothing more.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from rftlab.bandit.envs import CorrelatedEnv, KArmedEnv, SequenceEnv
from rftlab.bandit.optim import OptimConfig
from rftlab.bandit.simulate import SimConfig, SimResult, simulate
from rftlab.bandit.theory import failure_probability, mean_field_trajectory, minimalist_exact

Z = 2.576  # 99% two-sided normal quantile for the paired intervals
DELTA = 0.05  # smallest difference in optimal mass (Pass@1) counted as meaningful


@dataclass(frozen=True)
class Scale:
    """How big the pipeline's runs are (`quick` for smoke tests, `full` for the report)."""

    seeds: int
    rounds: int
    seq_seeds: int
    seq_rounds: int

    @staticmethod
    def of(quick: bool) -> Scale:
        return Scale(200, 150, 100, 100) if quick else Scale(1000, 400, 300, 300)


def paired_ci(a: Tensor, b: Tensor, z: float = Z) -> tuple[float, float, float]:
    """(mean, low, high) of the per-seed difference a - b."""
    d = (a - b).double()
    se = float(d.std() / math.sqrt(len(d))) if len(d) > 1 else float("inf")
    m = float(d.mean())
    return m, m - z * se, m + z * se


def mean_ci(a: Tensor, z: float = Z) -> tuple[float, float, float]:
    a = a.double()
    se = float(a.std() / math.sqrt(len(a)))
    return float(a.mean()), float(a.mean()) - z * se, float(a.mean()) + z * se


def verdict_direction(low: float, high: float, sign: int, delta: float = DELTA) -> str:
    """`agrees` if the interval lies beyond sign*delta, `disagrees` if it excludes that, else inconclusive."""
    if sign > 0:
        return "agrees" if low > delta else "disagrees" if high < delta else "inconclusive"
    return "agrees" if high < -delta else "disagrees" if low > -delta else "inconclusive"


def downward_moves(mass: Tensor) -> Tensor:
    """Per-seed total decrease of the optimal mass over the run, sum_t max(0, p_{t-1} - p_t): instability."""
    return (mass[:-1] - mass[1:]).clamp(min=0).sum(0)


def rounds_to(mass: Tensor, rounds: list[int], level: float) -> Tensor:
    """Per-seed first recorded round with mass >= level (censored at the last round + 1)."""
    hit = mass >= level  # (E, S)
    first = torch.where(hit.any(0), hit.float().argmax(0), torch.tensor(len(rounds) - 1))
    r = torch.tensor(rounds, dtype=torch.float32)[first]
    return torch.where(hit.any(0), r, torch.tensor(float(rounds[-1] + 1)))


def _finding(finding: str, layer: str, verdict: str, **numbers) -> dict:
    clean = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in numbers.items()}
    return {"finding": finding, "layer": layer, "verdict": verdict, "numbers": clean}


def run_pipeline(
    out: Path, quick: bool = False, seed: int = 0, progress: bool = True, scale: Scale | None = None
) -> list[dict]:
    """Run every layer's variants, write figures + report.html + findings.json into `out`; return findings.

    `scale` overrides the sizes chosen by `quick` (tests use a tiny one).
    """
    from rftlab.bandit.report import write_report
    from rftlab.report.html import BANDIT_MANIFEST

    sc = scale or Scale.of(quick)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / BANDIT_MANIFEST).unlink(missing_ok=True)  # written again once this run has finished
    findings: list[dict] = []
    curves: dict[str, dict] = {}
    base = SimConfig(rounds=sc.rounds)
    karm = KArmedEnv(arms=10_000, p0=0.05)
    corr = CorrelatedEnv(arms=64, optimal=4, dim=16, train_instances=1, test_instances=32)
    seq = SequenceEnv(vocab=16, length=10, context=1, rule="prefix", target_len=2)

    def run(env, cfg: SimConfig, n: int | None = None) -> SimResult:
        return simulate(env, cfg, n or sc.seeds, seed, progress=progress)

    # ---- L0 minimalist: learns, generalizes, varies across seeds
    r0 = run(karm, base)
    theory = minimalist_exact(karm.arms, karm.p0, base.optim.lr, sc.rounds)
    c0 = run(corr, base)
    final = r0.metrics["optimal_mass"][-1]
    train_c, test_c = c0.metrics["optimal_mass"], c0.metrics["test_optimal_mass"]
    gain = test_c[-1] - test_c[0]
    m_gain, lo_gain, hi_gain = mean_ci(gain)
    learns = float(final.mean()) > 0.9 and float(train_c[-1].mean()) > 0.9
    findings.append(
        _finding(
            "L0 minimalist learns the training example and generalizes; dynamics vary across seeds "
            "(rule: agrees if mean final train mass > 0.9 in both envs and the held-out gain CI > 0)",
            "L0",
            "agrees"
            if learns and lo_gain > 0
            else "disagrees"
            if not learns or hi_gain < 0
            else "inconclusive",
            karmed_final_mass_mean=float(final.mean()),
            karmed_final_mass_theory=float(theory["mean"][-1]),
            karmed_frac_seeds_above_0_9=float((final > 0.9).float().mean()),
            karmed_mass_std_across_seeds_midrun=float(r0.metrics["optimal_mass"][sc.rounds // 4].std()),
            correlated_train_mass_final=float(train_c[-1].mean()),
            correlated_test_mass_initial=float(test_c[0].mean()),
            correlated_test_gain_mean=m_gain,
            correlated_test_gain_ci=[lo_gain, hi_gain],
            correlated_test_gain_std_across_seeds=float(gain.std()),
            correlated_test_gain_max=float(gain.max()),
        )
    )
    curves["L0"] = {"karmed": r0, "theory": theory, "correlated": c0}

    # ---- L1 GRPO advantage vs none at G = 4 (with G = 1 they coincide)
    g4 = base.with_(rollouts=4)
    l1 = {}
    for name, env in (("karmed", karm), ("correlated", corr)):
        none_r, grpo_r = run(env, g4), run(env, g4.with_(advantage="grpo"))
        l1[name] = (none_r, grpo_r)
    none_c, grpo_c = l1["correlated"]
    none_k, grpo_k = l1["karmed"]
    d_unstable = paired_ci(
        downward_moves(grpo_c.metrics["optimal_mass"]), downward_moves(none_c.metrics["optimal_mass"])
    )
    d_unstable_test = paired_ci(
        downward_moves(grpo_c.metrics["test_optimal_mass"]),
        downward_moves(none_c.metrics["test_optimal_mass"]),
    )
    d_test = paired_ci(grpo_c.metrics["test_optimal_mass"][-1], none_c.metrics["test_optimal_mass"][-1])
    d_k = paired_ci(grpo_k.metrics["optimal_mass"][-1], none_k.metrics["optimal_mass"][-1])
    less_stable = d_unstable[1] > 0 or d_unstable_test[1] > 0
    not_better = d_test[2] < DELTA
    findings.append(
        _finding(
            "L1 GRPO advantage is less stable and no better than the raw reward (G = 4, same lr; rule: "
            "agrees if GRPO's total downward movement of train or test mass is larger (CI > 0) and its final "
            f"test mass is not better by {DELTA}; disagrees if it is better by {DELTA} or less unstable on both)",
            "L1",
            "agrees"
            if less_stable and not_better
            else "disagrees"
            if d_test[1] > DELTA or (d_unstable[2] < 0 and d_unstable_test[2] < 0)
            else "inconclusive",
            correlated_downward_train_grpo_minus_none=list(d_unstable),
            correlated_downward_test_grpo_minus_none=list(d_unstable_test),
            correlated_final_test_mass_grpo_minus_none=list(d_test),
            karmed_final_mass_grpo_minus_none=list(d_k),
            karmed_final_mass_none=float(none_k.metrics["optimal_mass"][-1].mean()),
            karmed_final_mass_grpo=float(grpo_k.metrics["optimal_mass"][-1].mean()),
        )
    )
    curves["L1"] = l1

    # ---- L2 rollouts per round
    gs = (1, 4, 16)
    l2 = {g: run(karm, base.with_(rollouts=g)) for g in gs}
    l2c = {g: run(corr, base.with_(rollouts=g)) for g in (1, 16)}
    to_half = {g: rounds_to(r.metrics["optimal_mass"], r.rounds, 0.5) for g, r in l2.items()}
    faster = paired_ci(to_half[16], to_half[1])  # rounds: negative = faster per round
    samples = paired_ci(to_half[16] * 16, to_half[1] * 1)  # positive = more samples needed
    d_gen = paired_ci(l2c[16].metrics["test_optimal_mass"][-1], l2c[1].metrics["test_optimal_mass"][-1])
    faster_per_round = faster[2] < 0
    worse_samples = samples[1] > 0
    findings.append(
        _finding(
            "L2 more rollouts per round learn faster per round but are less sample-efficient, no better at "
            "generalizing (rounds and samples to reach optimal mass 0.5, G = 16 vs 1; rule: agrees if both "
            "paired CIs have the paper's sign, disagrees if either has the opposite sign)",
            "L2",
            "agrees"
            if faster_per_round and worse_samples
            else "disagrees"
            if faster[1] > 0 or samples[2] < 0
            else "inconclusive",
            mean_rounds_to_half={str(g): float(v.mean()) for g, v in to_half.items()},
            mean_samples_to_half={str(g): float(v.mean() * g) for g, v in to_half.items()},
            rounds_g16_minus_g1=list(faster),
            samples_g16_minus_g1=list(samples),
            correlated_final_test_mass_g16_minus_g1=list(d_gen),
        )
    )
    curves["L2"] = {"karmed": l2, "correlated": l2c}

    # ---- L3 reward design: {0,1} vs {-1,1} vs {-1,0}, SGD and Adam, three envs
    adam = base.with_(optim=OptimConfig("adam", lr=0.05))
    l3: dict[str, dict[str, SimResult]] = {}
    for label, env, cfg, n in (
        ("karmed/sgd", karm, base, None),
        ("karmed/adam", karm, adam, None),
        ("correlated/sgd", corr, base, None),
        # token-mean divides a sequence's gradient by L = 10: lr 10 gives each token SGD's unit step
        (
            "sequence/sgd",
            seq,
            SimConfig(rounds=sc.seq_rounds, optim=OptimConfig("sgd", lr=10.0), eval_every=5),
            sc.seq_seeds,
        ),
        (
            "sequence/adam",
            seq,
            SimConfig(rounds=sc.seq_rounds, optim=OptimConfig("adam", lr=0.05), eval_every=5),
            sc.seq_seeds,
        ),
    ):
        l3[label] = {d: run(env, cfg.with_(reward_design=d), n) for d in ("binary", "pm1", "neg")}
        res = l3[label]
        for design in ("neg", "pm1"):
            d = paired_ci(res[design].metrics["optimal_mass"][-1], res["binary"].metrics["optimal_mass"][-1])
            ref_gain = float(
                (res["binary"].metrics["optimal_mass"][-1] - res["binary"].metrics["optimal_mass"][0]).mean()
            )
            findings.append(
                _finding(
                    f"L3 negative reward ({design}) makes training fail [{label}] (final train mass vs {{0,1}}; rule: "
                    f"agrees if lower by more than {DELTA}, disagrees if the CI excludes that; inconclusive if {{0,1}} "
                    f"itself gained less than {DELTA})",
                    "L3",
                    verdict_direction(d[1], d[2], -1) if ref_gain >= DELTA else "inconclusive",
                    final_mass_binary=float(res["binary"].metrics["optimal_mass"][-1].mean()),
                    final_mass_variant=float(res[design].metrics["optimal_mass"][-1].mean()),
                    initial_mass=float(res["binary"].metrics["optimal_mass"][0].mean()),
                    variant_minus_binary=list(d),
                )
            )
    curves["L3"] = l3

    # ---- L4 difficulty: p0 from easy to extremely hard
    p0s = (0.05, 1e-2, 1e-3, 1e-4)
    l4 = {p: run(KArmedEnv(arms=1_000_000, p0=p), base) for p in p0s}
    rows = []
    for p, r in l4.items():
        fail = float((r.metrics["successes"][-1] == 0).float().mean())
        rows.append(
            {
                "p0": p,
                "fail_frac_sim": fail,
                "fail_prob_theory": failure_probability(p, sc.rounds),
                "final_mass": float(r.metrics["optimal_mass"][-1].mean()),
            }
        )
    hardest = rows[-1]
    findings.append(
        _finding(
            "L4 an extremely hard example fails: no correct rollout, no signal (rule: agrees if most seeds "
            "(> 0.5) of the hardest p0 never see a success and its final mass stays below 0.1)",
            "L4",
            "agrees"
            if hardest["fail_frac_sim"] > 0.5 and hardest["final_mass"] < 0.1
            else "disagrees"
            if hardest["final_mass"] > 0.5
            else "inconclusive",
            by_p0=rows,
        )
    )
    curves["L4"] = l4

    # ---- number of training instances (the companion paper's batch layer; no claim in this paper)
    ns = (1, 4, 16)
    inst = {n: run(replace(corr, train_instances=n), base) for n in ns}
    d_inst = paired_ci(inst[16].metrics["test_optimal_mass"][-1], inst[1].metrics["test_optimal_mass"][-1])
    findings.append(
        _finding(
            "More training instances (one per round, same rollouts per round) and held-out mass: the paper "
            "makes no claim here (its next layer); reported for the batch question, verdict inconclusive by design",
            "next",
            "inconclusive",
            final_test_mass={
                str(n): float(r.metrics["test_optimal_mass"][-1].mean()) for n, r in inst.items()
            },
            final_train_mass={str(n): float(r.metrics["optimal_mass"][-1].mean()) for n, r in inst.items()},
            test_mass_16_minus_1=list(d_inst),
        )
    )
    curves["instances"] = inst
    curves["ode"] = mean_field_trajectory(karm.p0, karm.arms, base.optim.lr, sc.rounds)

    write_report(out, findings, curves, scale=sc.__dict__, seed=seed)
    return findings


def ensure_pipeline(out: Path, quick: bool = False, seed: int = 0, progress: bool = True) -> bool:
    """Run the pipeline into `out` unless a finished one of the same scale and seed is there; True if it ran."""
    from rftlab.report.html import BANDIT_MANIFEST

    manifest = Path(out) / BANDIT_MANIFEST
    if manifest.is_file():
        done = json.loads(manifest.read_text())
        if done.get("scale") == Scale.of(quick).__dict__ and done.get("seed") == seed:
            return False
    run_pipeline(Path(out), quick=quick, seed=seed, progress=progress)
    return True
