"""The LLM pipeline's layers, re-run as bandits over paired seeds, compared with the paper's findings.

Each layer varies one design choice, everything else at the minimalist configuration (rewards
{0, 1}, advantage `none`, G = 1, mu = 1, SGD). Variants of a layer share `seed`, so they start from
the same policies and draw from the same generator stream (paired seeds); differences are judged by
a paired confidence interval (mean +- z * standard error of the per-seed difference).

Verdicts are computed from the numbers by fixed rules, not chosen: each finding is a typed record
(`BanditFinding`) whose rule is data evaluated by the verdict engine the LLM pipeline uses
(`rftlab.verdicts`): `agrees` when the interval supports the paper's direction by a margin `delta`,
`disagrees` when it rules that out, `inconclusive` otherwise. Each layer is a short function of the
shared `Lab`, listed in `LAYERS`. The bandit is a model of the LLM setting, not the setting:
a verdict says what the model shows under these settings, nothing more.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from rftlab.bandit.envs import CorrelatedEnv, KArmedEnv, SequenceEnv
from rftlab.bandit.figures import QUICK_MARKS, write_results
from rftlab.bandit.optim import BanditOptimizer
from rftlab.bandit.simulate import SimConfig, SimResult, simulate
from rftlab.bandit.theory import expected_logit_update, failure_probability, mean_field_trajectory, minimalist_exact
from rftlab.files import BANDIT_MANIFEST
from rftlab.verdicts import AnyOf, Condition, Interval, Rule

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


def downward_moves(mass: Tensor) -> Tensor:
    """Per-seed total decrease of the optimal mass over the run, sum_t max(0, p_{t-1} - p_t): instability."""
    return (mass[:-1] - mass[1:]).clamp(min=0).sum(0)


def rounds_to(mass: Tensor, rounds: list[int], level: float) -> Tensor:
    """Per-seed first recorded round with mass >= level (censored at the last round + 1)."""
    hit = mass >= level  # (E, S)
    first = torch.where(hit.any(0), hit.float().argmax(0), torch.tensor(len(rounds) - 1))
    r = torch.tensor(rounds, dtype=torch.float32)[first]
    return torch.where(hit.any(0), r, torch.tensor(float(rounds[-1] + 1)))


def interval(ci: tuple[float, float, float], n: int) -> Interval:
    """A (mean, low, high) triple of `paired_ci`/`mean_ci` over n seeds, for the verdict engine."""
    return Interval(*ci, n)


def point(value: float, n: int) -> Interval:
    return Interval.point(value, n)


@dataclass(frozen=True)
class BanditFinding:
    """A finding of the paper as the bandit tests it: the claim, its rule as data, and the numbers.

    `rule` is evaluated by the verdict engine (rftlab.verdicts) that the LLM pipeline's claims use;
    `rule_text` states it for readers (findings.json keeps it in parentheses after the claim).
    """

    claim: str
    rule_text: str
    layer: str
    rule: Rule
    numbers: dict

    @property
    def verdict(self) -> str:
        return self.rule.verdict()

    @property
    def text(self) -> str:
        return f"{self.claim} ({self.rule_text})" if self.rule_text else self.claim

    def to_json(self) -> dict:
        clean = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.numbers.items()}
        return {"finding": self.text, "layer": self.layer, "verdict": self.verdict, "numbers": clean}


@dataclass
class Lab:
    """What every layer needs: the scale, the shared seed (paired seeds), the environments, the base config."""

    scale: Scale
    seed: int
    progress: bool

    def __post_init__(self) -> None:
        self.base = SimConfig(rounds=self.scale.rounds)
        self.karm = KArmedEnv(arms=10_000, p0=0.05)
        self.corr = CorrelatedEnv(arms=64, optimal=4, dim=16, train_instances=1, test_instances=32)
        self.seq = SequenceEnv(vocab=16, length=10, context=1, rule="prefix", target_len=2)

    def run(self, env, cfg: SimConfig, n: int | None = None) -> SimResult:
        return simulate(env, cfg, n or self.scale.seeds, self.seed, progress=self.progress)


Layer = Callable[[Lab], tuple[list[BanditFinding], dict]]  # (findings, curves for the figures)


def layer_minimalist(lab: Lab) -> tuple[list[BanditFinding], dict]:
    """L0: the minimalist configuration learns, generalizes, and varies across seeds."""
    sc, base, karm = lab.scale, lab.base, lab.karm
    r0 = lab.run(karm, base)
    theory = minimalist_exact(karm.arms, karm.p0, base.optim.lr, sc.rounds)
    c0 = lab.run(lab.corr, base)
    final = r0.metrics["optimal_mass"][-1]
    train_c, test_c = c0.metrics["optimal_mass"], c0.metrics["test_optimal_mass"]
    gain = test_c[-1] - test_c[0]
    m_gain, lo_gain, hi_gain = mean_ci(gain)
    n = len(final)
    rule = Rule(
        all_of=(
            Condition("gt", 0.9, point(float(final.mean()), n)),
            Condition("gt", 0.9, point(float(train_c[-1].mean()), n)),
            Condition("above", 0.0, interval((m_gain, lo_gain, hi_gain), n)),
        )
    )
    finding = BanditFinding(
        "L0 minimalist learns the training example and generalizes; dynamics vary across seeds",
        "rule: agrees if mean final train mass > 0.9 in both envs and the held-out gain CI > 0",
        "L0",
        rule,
        dict(
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
        ),
    )
    ode = mean_field_trajectory(karm.p0, karm.arms, base.optim.lr, sc.rounds)
    return [finding], {"L0": {"karmed": r0, "theory": theory, "correlated": c0}, "ode": ode}


def layer_advantage(lab: Lab) -> tuple[list[BanditFinding], dict]:
    """L1: GRPO's advantage vs none at G = 4 (with G = 1 they coincide)."""
    g4 = lab.base.with_(rollouts=4)
    l1 = {
        name: (lab.run(env, g4), lab.run(env, g4.with_(advantage="grpo")))
        for name, env in (("karmed", lab.karm), ("correlated", lab.corr))
    }
    (none_c, grpo_c), (none_k, grpo_k) = l1["correlated"], l1["karmed"]
    d_unstable = paired_ci(
        downward_moves(grpo_c.metrics["optimal_mass"]), downward_moves(none_c.metrics["optimal_mass"])
    )
    d_unstable_test = paired_ci(
        downward_moves(grpo_c.metrics["test_optimal_mass"]), downward_moves(none_c.metrics["test_optimal_mass"])
    )
    d_test = paired_ci(grpo_c.metrics["test_optimal_mass"][-1], none_c.metrics["test_optimal_mass"][-1])
    d_k = paired_ci(grpo_k.metrics["optimal_mass"][-1], none_k.metrics["optimal_mass"][-1])
    n = none_c.metrics["optimal_mass"].shape[1]
    less_stable = AnyOf(
        (Condition("above", 0.0, interval(d_unstable, n)), Condition("above", 0.0, interval(d_unstable_test, n)))
    )
    not_better = Condition("below", DELTA, interval(d_test, n))
    finding = BanditFinding(
        "L1 GRPO advantage is less stable and no better than the raw reward",
        "G = 4, same lr; rule: agrees if GRPO's total downward movement of train or test mass is larger (CI > 0) "
        f"and its final test mass is not better by {DELTA}; disagrees if it is better by {DELTA} or less unstable "
        "on both",
        "L1",
        Rule(all_of=(less_stable, not_better)),
        dict(
            correlated_downward_train_grpo_minus_none=list(d_unstable),
            correlated_downward_test_grpo_minus_none=list(d_unstable_test),
            correlated_final_test_mass_grpo_minus_none=list(d_test),
            karmed_final_mass_grpo_minus_none=list(d_k),
            karmed_final_mass_none=float(none_k.metrics["optimal_mass"][-1].mean()),
            karmed_final_mass_grpo=float(grpo_k.metrics["optimal_mass"][-1].mean()),
        ),
    )
    return [finding], {"L1": l1}


def layer_rollouts(lab: Lab) -> tuple[list[BanditFinding], dict]:
    """L2: more rollouts per round (G = 16 vs 1): faster per round, less sample-efficient."""
    gs = (1, 4, 16)
    l2 = {g: lab.run(lab.karm, lab.base.with_(rollouts=g)) for g in gs}
    l2c = {g: lab.run(lab.corr, lab.base.with_(rollouts=g)) for g in (1, 16)}
    to_half = {g: rounds_to(r.metrics["optimal_mass"], r.rounds, 0.5) for g, r in l2.items()}
    faster = paired_ci(to_half[16], to_half[1])  # rounds: negative = faster per round
    samples = paired_ci(to_half[16] * 16, to_half[1] * 1)  # positive = more samples needed
    d_gen = paired_ci(l2c[16].metrics["test_optimal_mass"][-1], l2c[1].metrics["test_optimal_mass"][-1])
    n = len(to_half[1])
    rule = Rule(all_of=(Condition("below", 0.0, interval(faster, n)), Condition("above", 0.0, interval(samples, n))))
    finding = BanditFinding(
        "L2 more rollouts per round learn faster per round but are less sample-efficient, no better at generalizing",
        "rounds and samples to reach optimal mass 0.5, G = 16 vs 1; rule: agrees if both "
        "paired CIs have the paper's sign, disagrees if either has the opposite sign",
        "L2",
        rule,
        dict(
            mean_rounds_to_half={str(g): float(v.mean()) for g, v in to_half.items()},
            mean_samples_to_half={str(g): float(v.mean() * g) for g, v in to_half.items()},
            rounds_g16_minus_g1=list(faster),
            samples_g16_minus_g1=list(samples),
            correlated_final_test_mass_g16_minus_g1=list(d_gen),
        ),
    )
    return [finding], {"L2": {"karmed": l2, "correlated": l2c}}


def layer_reward_design(lab: Lab) -> tuple[list[BanditFinding], dict]:
    """L3: rewards {0,1} vs {-1,1} vs {-1,0}, with SGD and Adam, in three environments."""
    sc, base = lab.scale, lab.base
    adam = base.with_(optim=BanditOptimizer("adam", lr=0.05))
    # token-mean divides a sequence's gradient by L = 10: lr 10 gives each token SGD's unit step
    seq_sgd = SimConfig(rounds=sc.seq_rounds, optim=BanditOptimizer("sgd", lr=10.0), eval_every=5)
    seq_adam = SimConfig(rounds=sc.seq_rounds, optim=BanditOptimizer("adam", lr=0.05), eval_every=5)
    settings = (
        ("karmed/sgd", lab.karm, base, None),
        ("karmed/adam", lab.karm, adam, None),
        ("correlated/sgd", lab.corr, base, None),
        ("sequence/sgd", lab.seq, seq_sgd, sc.seq_seeds),
        ("sequence/adam", lab.seq, seq_adam, sc.seq_seeds),
    )
    l3: dict[str, dict[str, SimResult]] = {}
    findings = []
    for label, env, cfg, n_seeds in settings:
        res = l3[label] = {d: lab.run(env, cfg.with_(reward_design=d), n_seeds) for d in ("binary", "pm1", "neg")}
        binary = res["binary"].metrics["optimal_mass"]
        for design in ("neg", "pm1"):
            findings.append(_reward_finding(label, design, binary, res[design].metrics["optimal_mass"]))
    return findings, {"L3": l3}


def _reward_finding(label: str, design: str, binary: Tensor, variant: Tensor) -> BanditFinding:
    d = paired_ci(variant[-1], binary[-1])
    ref_gain = float((binary[-1] - binary[0]).mean())
    n = binary.shape[1]
    rule = Rule(
        all_of=(Condition("below", -DELTA, interval(d, n)),),
        requires=(Condition("at_least", DELTA, point(ref_gain, n)),),
    )
    return BanditFinding(
        f"L3 negative reward ({design}) makes training fail [{label}]",
        f"final train mass vs {{0,1}}; rule: agrees if lower by more than {DELTA}, disagrees if the CI excludes "
        f"that; inconclusive if {{0,1}} itself gained less than {DELTA}",
        "L3",
        rule,
        dict(
            final_mass_binary=float(binary[-1].mean()),
            final_mass_variant=float(variant[-1].mean()),
            initial_mass=float(binary[0].mean()),
            variant_minus_binary=list(d),
        ),
    )


def layer_difficulty(lab: Lab) -> tuple[list[BanditFinding], dict]:
    """L4: p0 from easy to extremely hard; the hardest never sees a success."""
    l4 = {p: lab.run(KArmedEnv(arms=1_000_000, p0=p), lab.base) for p in (0.05, 1e-2, 1e-3, 1e-4)}
    rows = [
        {
            "p0": p,
            "fail_frac_sim": float((r.metrics["successes"][-1] == 0).float().mean()),
            "fail_prob_theory": failure_probability(p, lab.scale.rounds),
            "final_mass": float(r.metrics["optimal_mass"][-1].mean()),
        }
        for p, r in l4.items()
    ]
    hardest, n = rows[-1], l4[1e-4].metrics["optimal_mass"].shape[1]
    rule = Rule(
        all_of=(
            Condition("above", 0.5, point(hardest["fail_frac_sim"], n), disagree=-math.inf),
            Condition("below", 0.1, point(hardest["final_mass"], n), disagree=0.5),
        )
    )
    finding = BanditFinding(
        "L4 an extremely hard example fails: no correct rollout, no signal",
        "rule: agrees if most seeds (> 0.5) of the hardest p0 never see a success and its final mass stays below 0.1",
        "L4",
        rule,
        dict(by_p0=rows),
    )
    return [finding], {"L4": l4}


def layer_instances(lab: Lab) -> tuple[list[BanditFinding], dict]:
    """The number of training instances (the companion paper's batch layer; no claim in this paper)."""
    inst = {n: lab.run(replace(lab.corr, train_instances=n), lab.base) for n in (1, 4, 16)}
    d_inst = paired_ci(inst[16].metrics["test_optimal_mass"][-1], inst[1].metrics["test_optimal_mass"][-1])
    finding = BanditFinding(
        "More training instances (one per round, same rollouts per round) and held-out mass: the paper "
        "makes no claim here (its next layer); reported for the batch question, verdict inconclusive by design",
        "",
        "next",
        Rule(),
        dict(
            final_test_mass={str(n): float(r.metrics["test_optimal_mass"][-1].mean()) for n, r in inst.items()},
            final_train_mass={str(n): float(r.metrics["optimal_mass"][-1].mean()) for n, r in inst.items()},
            test_mass_16_minus_1=list(d_inst),
        ),
    )
    return [finding], {"instances": inst}


# ----------------------------------------------------------------------------- adaptive designs

# variant -> (advantage, G); the minimalist (none, G = 1) is the reference of every comparison
ADAPTIVE = {
    "minimalist": ("none", 1),
    "running_mean G=1": ("running_mean", 1),
    "w_reinforce G=1": ("w_reinforce", 1),
    "grpo G=4": ("grpo", 4),
    "grpo_lead G=4": ("grpo_lead", 4),
    "w_reinforce G=4": ("w_reinforce", 4),
}
# exact enumeration in float64, but the estimators return float32 advantages (lambda = 0.1 is off by
# ~1.5e-9 relative): an identity that holds gives errors of ~1e-10, a broken one errors of order lr * p
UNBIASED_TOL = 1e-6


def baseline_theory_errors(positive_weight: float = 0.1) -> dict[str, float]:
    """Largest |difference| of exact expected logit updates, over small bandits, G in {1, 2}, baselines b:

    `running_mean` with any fixed b against `none` (a baseline leaves the expected update unchanged),
    and `w_reinforce` against (1 + lambda) x `none`. Both 0 in exact arithmetic (`expected_logit_update`).
    """
    gen = torch.Generator().manual_seed(0)
    err_baseline, err_weighted = 0.0, 0.0
    for arms, optimal_arms in ((3, 1), (5, 2)):
        logits = torch.randn(arms, generator=gen, dtype=torch.float64)
        optimal = torch.arange(arms) < optimal_arms
        for rollouts in (1, 2):
            plain = expected_logit_update(logits, optimal, 0.5, rollouts)
            for b in (0.25, 0.5, 0.9):
                shifted = expected_logit_update(logits, optimal, 0.5, rollouts, "running_mean", baseline=b)
                err_baseline = max(err_baseline, float((shifted - plain).abs().max()))
            weighted = expected_logit_update(
                logits, optimal, 0.5, rollouts, "w_reinforce", advantage_params={"positive_weight": positive_weight}
            )
            err_weighted = max(err_weighted, float((weighted - (1 + positive_weight) * plain).abs().max()))
    return {"running_mean_vs_none": err_baseline, "w_reinforce_vs_scaled_none": err_weighted}


def layer_adaptive(lab: Lab) -> tuple[list[BanditFinding], dict]:
    """Adaptive designs (issue 12): W-REINFORCE, GRPO-LEAD's difficulty weights, a running-mean baseline.

    Each against the minimalist (none, G = 1) on the K-armed bandit (speed, samples, stability) and
    the correlated family (held-out mass); the group designs at G = 4 also against GRPO at G = 4.
    """
    base, n_seeds = lab.base, lab.scale.seeds
    runs = {
        name: {
            env_name: lab.run(env, base.with_(advantage=adv, rollouts=g))
            for env_name, env in (("karmed", lab.karm), ("correlated", lab.corr))
        }
        for name, (adv, g) in ADAPTIVE.items()
    }
    to_half = {n: rounds_to(r["karmed"].metrics["optimal_mass"], r["karmed"].rounds, 0.5) for n, r in runs.items()}
    unstable = {n: downward_moves(r["correlated"].metrics["test_optimal_mass"]) for n, r in runs.items()}
    test = {n: r["correlated"].metrics["test_optimal_mass"][-1] for n, r in runs.items()}
    train = {n: r["karmed"].metrics["optimal_mass"][-1] for n, r in runs.items()}

    def vs(name: str, ref: str = "minimalist") -> dict:
        g, g_ref = ADAPTIVE[name][1], ADAPTIVE[ref][1]
        return dict(
            rounds_to_half=paired_ci(to_half[name], to_half[ref]),
            samples_to_half=paired_ci(to_half[name] * g, to_half[ref] * g_ref),
            test_downward=paired_ci(unstable[name], unstable[ref]),
            final_test_mass=paired_ci(test[name], test[ref]),
            final_train_mass=paired_ci(train[name], train[ref]),
        )

    table = {name: {k: list(v) for k, v in vs(name).items()} for name in ADAPTIVE if name != "minimalist"}
    means = {
        name: dict(
            rounds_to_half=float(to_half[name].mean()),
            samples_to_half=float(to_half[name].mean() * ADAPTIVE[name][1]),
            test_downward=float(unstable[name].mean()),
            final_test_mass=float(test[name].mean()),
            final_train_mass=float(train[name].mean()),
        )
        for name in ADAPTIVE
    }
    errors = baseline_theory_errors(base.positive_weight)
    theory = BanditFinding(
        "adaptive: a baseline that does not depend on the round's draws leaves the expected update unchanged, "
        "and W-REINFORCE's expected update is (1 + lambda) times the minimalist's",
        f"exact enumeration of one SGD round on small bandits (K = 3, 5; G = 1, 2; b = 0.25, 0.5, 0.9); rule: agrees "
        f"if both largest errors are below {UNBIASED_TOL:g}, disagrees otherwise",
        "adaptive",
        Rule(all_of=tuple(Condition("below", UNBIASED_TOL, point(e, 10**6)) for e in errors.values())),
        dict(max_abs_error=errors),
    )
    w1, w4, lead = vs("w_reinforce G=1"), vs("w_reinforce G=4", "grpo G=4"), vs("grpo_lead G=4", "grpo G=4")
    n = n_seeds
    w_reinforce = BanditFinding(
        "adaptive: W-REINFORCE (lambda = 0.1: correct +0.1, wrong -1) generalizes no worse than the minimalist "
        "(G = 1) or GRPO (G = 4)",
        f"Zhu et al. 2025's claim; final held-out mass [correlated], paired; rule: agrees if both CIs lie above "
        f"-{DELTA}, disagrees if either lies below -{DELTA}",
        "adaptive",
        Rule(
            all_of=(
                Condition("above", -DELTA, interval(w1["final_test_mass"], n)),
                Condition("above", -DELTA, interval(w4["final_test_mass"], n)),
            )
        ),
        dict(
            w_reinforce_g1_minus_minimalist={k: list(v) for k, v in w1.items()},
            w_reinforce_g4_minus_grpo_g4={k: list(v) for k, v in w4.items()},
        ),
    )
    grpo_lead = BanditFinding(
        "adaptive: GRPO-LEAD's difficulty weights learn a hard example faster than GRPO (G = 4)",
        "Zhang & Zuo 2025's claim; rounds to optimal mass 0.5 [K-armed, p0 = 0.05], paired; rule: agrees if the "
        "CI of grpo_lead - grpo lies below 0, disagrees if above 0",
        "adaptive",
        Rule(all_of=(Condition("below", 0.0, interval(lead["rounds_to_half"], n)),)),
        dict(grpo_lead_g4_minus_grpo_g4={k: list(v) for k, v in lead.items()}),
    )
    rm = vs("running_mean G=1")
    running_mean = BanditFinding(
        "adaptive: a running-mean baseline (G = 1) changes neither speed nor final train mass by more than "
        f"{DELTA} against the minimalist (its expected update is the same)",
        f"Sutton & Barto sec. 2.8's gradient bandit; final train mass [K-armed], paired; rule: agrees if the CI "
        f"lies within (-{DELTA}, {DELTA}), disagrees if it lies wholly outside one side",
        "adaptive",
        Rule(
            all_of=(
                Condition("above", -DELTA, interval(rm["final_train_mass"], n)),
                Condition("below", DELTA, interval(rm["final_train_mass"], n)),
            )
        ),
        dict(running_mean_g1_minus_minimalist={k: list(v) for k, v in rm.items()}),
    )
    summary = BanditFinding(
        "adaptive designs against the minimalist: speed (rounds to mass 0.5), sample efficiency (rollouts to 0.5), "
        "stability (downward movement of held-out mass) and generalization (final held-out mass); reported, "
        "no claim (verdict inconclusive by design)",
        "",
        "adaptive",
        Rule(),
        dict(mean_per_variant=means, minus_minimalist=table),
    )
    return [theory, w_reinforce, grpo_lead, running_mean, summary], {"adaptive": runs}


LAYERS: tuple[Layer, ...] = (
    layer_minimalist,
    layer_advantage,
    layer_rollouts,
    layer_reward_design,
    layer_difficulty,
    layer_instances,
    layer_adaptive,
)


def run_counterparts(
    out: Path, quick: bool = False, seed: int = 0, progress: bool = True, scale: Scale | None = None
) -> list[dict]:
    """Run every layer's variants, write figures, findings.json and bandit.json into `out`; return findings.

    `scale` overrides the sizes chosen by `quick` (tests use a tiny one).
    """
    sc = scale or Scale.of(quick)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / BANDIT_MANIFEST).unlink(missing_ok=True)  # written again once this run has finished
    lab = Lab(sc, seed, progress)
    findings: list[BanditFinding] = []
    curves: dict = {}
    for layer in LAYERS:
        found, drawn = layer(lab)
        findings += found
        curves.update(drawn)
    write_results(out, findings, curves, scale=sc.__dict__, seed=seed, quick=quick)
    return [{**f.to_json(), **(QUICK_MARKS if quick else {})} for f in findings]


def is_finished(out: Path, quick: bool = False, seed: int = 0) -> bool:
    """True if `out` holds a finished pipeline of the same scale and seed (its bandit.json)."""
    manifest = Path(out) / BANDIT_MANIFEST
    if not manifest.is_file():
        return False
    done = json.loads(manifest.read_text())
    return done.get("scale") == Scale.of(quick).__dict__ and done.get("seed") == seed
