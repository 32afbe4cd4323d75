"""Statistics of a variant across seeds, and paired comparisons between variants.

Per run (one seed) from its eval rows in metrics.jsonl (and its per-round rows):
- learning speed: `conv_round` / `conv_rollouts`, the first eval where train Pass@1 >= 0.9 (None if
  never); `*_censored` counts a run that never got there as its whole budget (a lower bound, so a
  variant that fails is never made to look faster than it is); `auc_rounds`: mean train Pass@1 over
  the layer's common round horizon (area under train Pass@1 vs round, normalized to [0, 1]).
- sample efficiency: `auc_rollouts`, the area under train Pass@1 vs rollouts consumed over the
  layer's common rollout horizon H (the smallest budget among its variants), divided by H; and
  `online_correct`, the share of correct rollouts among the first H (1 - normalized regret).
  Curves are linear between evals and flat after a run's last eval.
- generalization: `test_final`, `test_best`, `test_gain` (final - base), `test_best_gain`.
- stability: `test_max_drop`, the largest fall of test Pass@1 below its running peak.
Per variant (a set of seeds): `never_frac`, `conv_round_spread` (std of convergence rounds of the
seeds that converged), `train_seed_std` / `test_seed_std` (across-seed std at each eval round,
averaged over rounds).

Intervals are percentile bootstraps over seeds (seeded: the same data give the same numbers).
A paired difference (variant - reference) resamples the seeds both share, keeping pairs together,
which removes the between-seed variation the two variants have in common.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rftlab.runs import read_metrics

CONVERGED = 0.9  # train Pass@1 at which a run counts as having learned its training example
BOOTSTRAP = 2000
CI_SEED = 20260121


@dataclass
class RunCurve:
    """The eval curve of one run (one seed), plus the per-round rollout outcomes."""

    seed: int
    rounds: np.ndarray  # (E,) eval rounds, increasing, starting at 0
    rollouts: np.ndarray  # (E,) rollouts consumed at each eval
    train: np.ndarray  # (E,) train-example Pass@1
    test: np.ndarray  # (E,) test Pass@1
    total_rounds: int
    round_rollouts: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (R,) cumulative, per round
    round_correct: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (R,) correct rollouts that round
    name: str = ""
    # Pass@1 = format rate x accuracy among well-formed answers, per eval (nan where a run lacks them)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # DECOMPOSITION_KEYS name -> (E,)
    task_train: dict[str, np.ndarray] = field(default_factory=dict)  # multi-task run: (E,) per task trained on
    task_test: dict[str, np.ndarray] = field(default_factory=dict)  # (E,) per task evaluated (test/<task>/...)


@dataclass(frozen=True)
class Context:
    """What a metric needs besides the run: the layer's common horizons."""

    round_horizon: float | None = None
    rollout_horizon: float | None = None
    threshold: float = CONVERGED


@dataclass(frozen=True)
class Estimate:
    """A mean (or a variant-level statistic) with its 95% bootstrap interval over n seeds."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return {"value": _num(self.value), "low": _num(self.low), "high": _num(self.high), "n": self.n}


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


# ----------------------------------------------------------------------------- loading


def curve_from_rows(rows: list[dict], *, seed: int = 0, total_rounds: int | None = None, name: str = "") -> RunCurve:
    """A RunCurve from metrics.jsonl rows (eval rows carry `split: "eval"`)."""
    evals: dict[int, dict] = {}
    for row in rows:
        if row.get("split") == "eval":
            evals[int(row["round"])] = row  # a repeated round (a resumed log) keeps the latest line
    if not evals:
        raise ValueError(f"run {name or seed}: no eval rows in metrics.jsonl")
    ordered = [evals[r] for r in sorted(evals)]
    per_round = sorted((r for r in rows if r.get("split") == "train_round"), key=lambda r: r["round"])
    per_round = list({int(r["round"]): r for r in per_round}.values())
    rollouts_total = np.array([r.get("rollouts_total", 0) for r in per_round], dtype=float)
    previous = np.concatenate([[0.0], rollouts_total[:-1]])
    correct = np.array([r.get("correct/mean", 0.0) or 0.0 for r in per_round], dtype=float) * (
        rollouts_total - previous
    )
    return RunCurve(
        seed=seed,
        rounds=np.array([r["round"] for r in ordered], dtype=float),
        rollouts=np.array([r.get("rollouts_total", 0) for r in ordered], dtype=float),
        train=np.array([_nan(r.get("train/pass_at_1")) for r in ordered], dtype=float),
        test=np.array([_nan(r.get("test/pass_at_1")) for r in ordered], dtype=float),
        total_rounds=int(total_rounds if total_rounds is not None else max(evals)),
        round_rollouts=rollouts_total,
        round_correct=correct,
        name=name,
        extra=decomposition_arrays(ordered),
        task_train=task_curves(ordered, "train"),
        task_test=task_curves(ordered, "test"),
    )


def task_curves(evals: list[dict], split: str) -> dict[str, np.ndarray]:
    """Per task, its `<split>/<task>/pass_at_1` at every eval row (nan where a row lacks it)."""
    names = {
        k.split("/")[1]
        for r in evals
        for k in r
        if k.count("/") == 2 and k.startswith(f"{split}/") and k.endswith("/pass_at_1")
    }
    return {t: np.array([_nan(r.get(f"{split}/{t}/pass_at_1")) for r in evals], dtype=float) for t in sorted(names)}


def _nan(x) -> float:
    return float("nan") if x is None else float(x)


def load_run(path, *, seed: int | None = None) -> RunCurve:
    """Read a run directory (metrics.jsonl, and config.yaml for its seed and round budget)."""
    from pathlib import Path

    import yaml

    path = Path(path)
    config = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").is_file() else {}
    rows = read_metrics(path / "metrics.jsonl")
    return curve_from_rows(
        rows,
        seed=seed if seed is not None else int(config.get("seed", 0)),
        total_rounds=(config.get("train") or {}).get("rounds"),
        name=path.name,
    )


# ----------------------------------------------------------------------------- per-run metrics


def area_normalized(x: np.ndarray, y: np.ndarray, horizon: float) -> float:
    """(1/H) * integral_0^H y dx, y linear between points and flat after the last one."""
    if horizon is None or horizon <= 0 or len(x) == 0:
        return float("nan")
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) == 0:
        return float("nan")
    if x[-1] < horizon:
        x, y = np.append(x, horizon), np.append(y, y[-1])
    grid_y = np.interp(horizon, x, y)
    inside = x < horizon
    xs = np.append(x[inside], horizon)
    ys = np.append(y[inside], grid_y)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / horizon)


def first_reaching(curve: RunCurve, threshold: float = CONVERGED) -> int | None:
    hits = np.nonzero(curve.train >= threshold)[0]
    return int(hits[0]) if len(hits) else None


def max_drop(values: np.ndarray) -> float:
    """The largest fall below the running peak: max_t (max_{s<=t} v_s - v_t)."""
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return float("nan")
    return float(np.max(np.maximum.accumulate(v) - v))


def online_correct(curve: RunCurve, horizon: float | None) -> float:
    """Share of correct rollouts among the first H consumed (fractional last round)."""
    if horizon is None or horizon <= 0 or len(curve.round_rollouts) == 0:
        return float("nan")
    total, seen, got = 0.0, 0.0, 0.0
    for cum, correct in zip(curve.round_rollouts, curve.round_correct, strict=True):
        n = cum - total
        take = min(n, horizon - seen)
        if take <= 0:
            break
        got += correct * take / n if n else 0.0
        seen += take
        total = cum
    return got / seen if seen else float("nan")


def _seed_metric(fn: Callable[[RunCurve, Context], float | None]):
    fn.kind = "seed"
    return fn


def _group_metric(fn: Callable[[Sequence[RunCurve], Context], float]):
    fn.kind = "group"
    return fn


def _conv(curve: RunCurve, ctx: Context, what: str, censored: bool) -> float | None:
    i = first_reaching(curve, ctx.threshold)
    if i is None:
        if not censored:
            return None
        return float(curve.total_rounds) if what == "rounds" else float(curve.rollouts[-1])
    return float(curve.rounds[i] if what == "rounds" else curve.rollouts[i])


def _group_std(curves: Sequence[RunCurve], key: str) -> float:
    if len(curves) < 2:
        return float("nan")
    common = sorted(set.intersection(*(set(c.rounds.tolist()) for c in curves)))
    if not common:
        return float("nan")
    mat = np.array([[getattr(c, key)[np.searchsorted(c.rounds, r)] for r in common] for c in curves])  # (S, E)
    return float(np.nanmean(np.nanstd(mat, axis=0, ddof=1)))


METRICS: dict[str, Callable] = {
    # learning speed
    "conv_round": _seed_metric(lambda c, x: _conv(c, x, "rounds", False)),
    "conv_rollouts": _seed_metric(lambda c, x: _conv(c, x, "rollouts", False)),
    "conv_round_censored": _seed_metric(lambda c, x: _conv(c, x, "rounds", True)),
    "conv_rollouts_censored": _seed_metric(lambda c, x: _conv(c, x, "rollouts", True)),
    "never_frac": _group_metric(lambda cs, x: float(np.mean([first_reaching(c, x.threshold) is None for c in cs]))),
    "auc_rounds": _seed_metric(lambda c, x: area_normalized(c.rounds, c.train, x.round_horizon or c.rounds[-1])),
    # sample efficiency
    "auc_rollouts": _seed_metric(
        lambda c, x: area_normalized(c.rollouts, c.train, x.rollout_horizon or c.rollouts[-1])
    ),
    "online_correct": _seed_metric(
        lambda c, x: online_correct(c, x.rollout_horizon or (c.round_rollouts[-1] if len(c.round_rollouts) else None))
    ),
    # generalization
    "train_base": _seed_metric(lambda c, x: float(c.train[0])),
    "train_final": _seed_metric(lambda c, x: float(c.train[-1])),
    "train_gain": _seed_metric(lambda c, x: float(c.train[-1] - c.train[0])),
    "test_base": _seed_metric(lambda c, x: float(c.test[0])),
    "test_final": _seed_metric(lambda c, x: float(c.test[-1])),
    "test_best": _seed_metric(lambda c, x: float(np.nanmax(c.test))),
    "test_gain": _seed_metric(lambda c, x: float(c.test[-1] - c.test[0])),
    "test_best_gain": _seed_metric(lambda c, x: float(np.nanmax(c.test) - c.test[0])),
    # stability
    "test_max_drop": _seed_metric(lambda c, x: max_drop(c.test)),
    "train_max_drop": _seed_metric(lambda c, x: max_drop(c.train)),
    "conv_round_spread": _group_metric(
        lambda cs, x: (
            float(np.std(v, ddof=1))
            if len(v := [r for c in cs if (r := _conv(c, x, "rounds", False)) is not None]) > 1
            else float("nan")
        )
    ),
    "train_seed_std": _group_metric(lambda cs, x: _group_std(cs, "train")),
    "test_seed_std": _group_metric(lambda cs, x: _group_std(cs, "test")),
    "rounds": _seed_metric(lambda c, x: float(c.total_rounds)),
    "rollouts_total": _seed_metric(lambda c, x: float(c.rollouts[-1])),
    # post-saturation generalization and the format x accuracy decomposition (defined further down)
    "sat_round": _seed_metric(lambda c, x: saturation_round(c)),
    "post_sat_test_gain": _seed_metric(lambda c, x: post_saturation_test_gain(c)),
    "sat_never_frac": _group_metric(lambda cs, x: float(np.mean([saturation_index(c) is None for c in cs]))),
    "test_format_gain": _seed_metric(lambda c, x: _extra_gain(c, "test/format_rate")),
    "test_acc_given_format_gain": _seed_metric(lambda c, x: _extra_gain(c, "test/accuracy_given_format")),
}

METRIC_HELP = {
    "conv_round": "first eval round with train Pass@1 >= 0.9 (seeds that got there)",
    "conv_rollouts": "rollouts consumed by then (seeds that got there)",
    "conv_round_censored": "as conv_round, a seed that never got there counted as its whole budget",
    "conv_rollouts_censored": "as conv_rollouts, censored at the budget",
    "never_frac": "fraction of seeds that never reached train Pass@1 >= 0.9",
    "auc_rounds": "mean train Pass@1 over the layer's common round horizon (speed per round)",
    "auc_rollouts": "area under train Pass@1 vs rollouts over the layer's common rollout budget, normalized",
    "online_correct": "share of correct rollouts among the first H consumed (1 - normalized regret)",
    "train_base": "train-example Pass@1 of the base model",
    "train_final": "train-example Pass@1 at the last round",
    "train_gain": "train Pass@1 final - base",
    "test_base": "test Pass@1 of the base model",
    "test_final": "test Pass@1 at the last round",
    "test_best": "best test Pass@1 at any eval",
    "test_gain": "test Pass@1 final - base",
    "test_best_gain": "test Pass@1 best - base",
    "test_max_drop": "largest fall of test Pass@1 below its running peak",
    "train_max_drop": "largest fall of train Pass@1 below its running peak",
    "conv_round_spread": "std across seeds of the convergence round (seeds that converged)",
    "train_seed_std": "across-seed std of train Pass@1, averaged over eval rounds",
    "test_seed_std": "across-seed std of test Pass@1, averaged over eval rounds",
    "rounds": "training rounds",
    "rollouts_total": "rollouts consumed in all",
    "sat_round": "eval round where train Pass@1 saturates: its Wilson lower bound >= 0.8 at 2 consecutive evals",
    "post_sat_test_gain": "test Pass@1 at the last eval - at the saturation round (seeds that saturated)",
    "sat_never_frac": "fraction of seeds whose train Pass@1 never saturated by that rule",
    "test_format_gain": "test share of well-formed final answers, final - base",
    "test_acc_given_format_gain": "test accuracy among well-formed answers, final - base",
}


def on_task(curve: RunCurve, task: str) -> RunCurve:
    """The run seen through one task: its train / test curves are that task's (nan if it has none)."""
    missing = np.full(len(curve.rounds), np.nan)
    return dataclasses.replace(
        curve, train=curve.task_train.get(task, missing), test=curve.task_test.get(task, missing)
    )


class TaskMetrics(dict):
    """METRICS, and `<metric>:<task>` for any of them: the metric on task <task>'s own curves.

    `test_final:add` is the final test Pass@1 on task add's test set (`test/add/pass_at_1`) of a
    multi-task run (data.mix); a run that did not evaluate the task gives nan (inconclusive).
    Task names are those of `rftlab.tasks.mix.TASKS`, so a typo fails when the spec is loaded.
    """

    def _split(self, key) -> tuple[str, str] | None:
        if not isinstance(key, str) or ":" not in key:
            return None
        base, _, task = key.partition(":")
        from rftlab.tasks.mix import TASKS

        return (base, task) if dict.__contains__(self, base) and task in TASKS else None

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or self._split(key) is not None

    def __missing__(self, key):
        parts = self._split(key)
        if parts is None:
            raise KeyError(key)
        fn, task = dict.__getitem__(self, parts[0]), parts[1]
        if fn.kind == "seed":
            wrapped = _seed_metric(lambda c, x: fn(on_task(c, task), x))
        else:
            wrapped = _group_metric(lambda cs, x: fn([on_task(c, task) for c in cs], x))
        return wrapped


METRICS = TaskMetrics(METRICS)


def metric_kind(name: str) -> str:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; metrics: {', '.join(METRICS)}")
    return METRICS[name].kind


def seed_values(curves: Sequence[RunCurve], metric: str, ctx: Context = Context()) -> np.ndarray:
    """(S,) per-seed values of a per-run metric (nan where undefined, e.g. never converged)."""
    fn = METRICS[metric]
    return np.array([_nan(fn(c, ctx)) for c in curves], dtype=float)


# ----------------------------------------------------------------------------- bootstrap


def bootstrap_ci(values: np.ndarray, *, n_boot: int = BOOTSTRAP, seed: int = CI_SEED, level: float = 0.95) -> Estimate:
    """Mean of the finite values with its percentile-bootstrap interval (resampling those values)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))  # (n_boot, S)
    means = v[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return Estimate(float(v.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)), len(v))


def _bootstrap_group(fn: Callable[[list[int]], float], n: int, n_boot: int, seed: int, level: float) -> Estimate:
    value = fn(list(range(n)))
    if n == 0 or not math.isfinite(value):
        return Estimate(value, float("nan"), float("nan"), n)
    rng = np.random.default_rng(seed)
    draws = np.array([fn(rng.integers(0, n, size=n).tolist()) for _ in range(n_boot)])
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return Estimate(value, float("nan"), float("nan"), n)
    alpha = (1 - level) / 2
    return Estimate(value, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha)), n)


def estimate(
    curves: Sequence[RunCurve], metric: str, ctx: Context = Context(), *, n_boot: int = BOOTSTRAP, seed: int = CI_SEED
) -> Estimate:
    """A variant's value of a metric across its seeds, with a 95% bootstrap interval."""
    if metric_kind(metric) == "seed":
        return bootstrap_ci(seed_values(curves, metric, ctx), n_boot=n_boot, seed=seed)
    fn = METRICS[metric]
    return _bootstrap_group(lambda idx: fn([curves[i] for i in idx], ctx), len(curves), n_boot // 4, seed, 0.95)


def pair_by_seed(a: Sequence[RunCurve], b: Sequence[RunCurve]) -> tuple[list[RunCurve], list[RunCurve]]:
    """The runs of a and b that share a seed, in seed order."""
    by_seed = {c.seed: c for c in b}
    shared = sorted(c.seed for c in a if c.seed in by_seed)
    a_by = {c.seed: c for c in a}
    return [a_by[s] for s in shared], [by_seed[s] for s in shared]


def paired_difference(
    variant: Sequence[RunCurve],
    reference: Sequence[RunCurve],
    metric: str,
    ctx: Context = Context(),
    *,
    n_boot: int = BOOTSTRAP,
    seed: int = CI_SEED,
) -> Estimate:
    """Variant - reference, paired by seed, with a 95% bootstrap interval over the shared seeds."""
    a, b = pair_by_seed(variant, reference)
    if metric_kind(metric) == "seed":
        return bootstrap_ci(seed_values(a, metric, ctx) - seed_values(b, metric, ctx), n_boot=n_boot, seed=seed)
    fn = METRICS[metric]
    return _bootstrap_group(
        lambda idx: fn([a[i] for i in idx], ctx) - fn([b[i] for i in idx], ctx), len(a), n_boot // 4, seed, 0.95
    )


# ----------------------------------------------------------------------------- curves for figures


def mean_curve(
    curves: Sequence[RunCurve], x: str = "rounds", y: str = "train", *, n_boot: int = 500, seed: int = CI_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, low, high) over seeds at the eval points all seeds share (95% bootstrap band)."""
    if not curves:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    common = sorted(set.intersection(*(set(c.rounds.tolist()) for c in curves)))
    mat = np.array([[getattr(c, y)[np.searchsorted(c.rounds, r)] for r in common] for c in curves])  # (S, E)
    xs = np.array([curves[0].__dict__[x][np.searchsorted(curves[0].rounds, r)] for r in common])
    mean = np.nanmean(mat, axis=0)
    if len(curves) < 2:
        return xs, mean, mean, mean
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(curves), size=(n_boot, len(curves)))
    boots = np.nanmean(mat[idx], axis=1)  # (n_boot, E)
    return xs, mean, np.nanquantile(boots, 0.025, axis=0), np.nanquantile(boots, 0.975, axis=0)


TASK_METRICS = ("train_final", "test_base", "test_final", "test_gain")


def task_estimates(
    curves: Sequence[RunCurve], ctx: Context = Context(), *, n_boot: int = BOOTSTRAP
) -> dict[str, dict[str, dict]]:
    """Per task a variant's runs evaluated (multi-task runs), TASK_METRICS on that task's curves; {} for none."""
    tasks = sorted({t for c in curves for t in c.task_test})
    return {
        t: {m: estimate([on_task(c, t) for c in curves], m, ctx, n_boot=n_boot).as_dict() for m in TASK_METRICS}
        for t in tasks
    }


def layer_context(groups: dict[str, Sequence[RunCurve]], threshold: float = CONVERGED) -> Context:
    """The common horizons of a layer: the smallest round and rollout budgets among its runs."""
    runs = [c for cs in groups.values() for c in cs]
    if not runs:
        return Context(threshold=threshold)
    return Context(
        round_horizon=float(min(c.rounds[-1] for c in runs)) or None,
        rollout_horizon=float(min(c.rollouts[-1] for c in runs)) or None,
        threshold=threshold,
    )


# ----------------------------------------------------------------------------- post-saturation generalization
#
# The rule: train Pass@1 has saturated at the first eval round r where the 95% Wilson lower bound of
# train Pass@1 is >= SATURATION_LOW at r and at the next SATURATION_EVALS - 1 evals too (consecutive
# evals, so one lucky eval does not count). The test change after it is test Pass@1 at the last eval
# minus at r, per seed; across seeds it gets the usual bootstrap interval, paired by construction
# (each seed is compared with itself). A seed that never saturates has no value (nan).
#
# Why 0.8 and not 0.9: with eval.train_samples = 16 (the paper pipeline) the Wilson lower bound is at
# most 16/(16 + 1.96^2) = 0.806, so a 0.9 bound could never be met; >= 0.8 at n = 16 means 16 of 16
# correct (15 of 16 gives 0.717). A bound of 0.9 needs n >= 35 samples.

SATURATION_LOW = 0.8
SATURATION_EVALS = 2


def saturation_index(curve: RunCurve, low: float = SATURATION_LOW, k: int = SATURATION_EVALS) -> int | None:
    """Index of the eval where train Pass@1 saturates by the rule above, or None (never, or too few evals)."""
    bounds = curve.extra.get("train/pass_at_1_low")
    if bounds is None or len(bounds) != len(curve.rounds):
        return None
    hit = np.isfinite(bounds) & (bounds >= low)
    for i in range(len(hit) - k + 1):
        if hit[i : i + k].all():
            return i
    return None


def saturation_round(curve: RunCurve, low: float = SATURATION_LOW, k: int = SATURATION_EVALS) -> float | None:
    i = saturation_index(curve, low, k)
    return None if i is None else float(curve.rounds[i])


def post_saturation_test_gain(curve: RunCurve, low: float = SATURATION_LOW, k: int = SATURATION_EVALS) -> float:
    """Test Pass@1 at the last eval minus at the saturation round; nan if train never saturated."""
    i = saturation_index(curve, low, k)
    return float("nan") if i is None else float(curve.test[-1] - curve.test[i])


SATURATION_RULE = (
    f"train Pass@1 saturates at the first eval whose 95% Wilson lower bound is >= {SATURATION_LOW} at "
    f"{SATURATION_EVALS} consecutive evals; post_sat_test_gain = test Pass@1 at the last eval - at that round, "
    "per seed (seeds that never saturate are left out)"
)


def saturation_summary(curves: Sequence[RunCurve], *, n_boot: int = BOOTSTRAP, seed: int = CI_SEED) -> dict:
    """A variant's saturation round, post-saturation test change (95% bootstrap over seeds) and counts."""
    ctx = Context()
    rounds = seed_values(curves, "sat_round", ctx)
    return {
        "rule": SATURATION_RULE,
        "saturated": int(np.isfinite(rounds).sum()),
        "seeds": len(curves),
        "sat_round": bootstrap_ci(rounds, n_boot=n_boot, seed=seed).as_dict(),
        "post_sat_test_gain": estimate(curves, "post_sat_test_gain", ctx, n_boot=n_boot, seed=seed).as_dict(),
        "post_sat_rounds": bootstrap_ci(
            np.array([c.total_rounds for c in curves], dtype=float) - rounds, n_boot=n_boot, seed=seed
        ).as_dict(),
    }


# ----------------------------------------------------------------------------- format x accuracy
#
# Eval rows carry `{train,test}/format_rate` (share of responses with a well-formed final answer),
# `{train,test}/accuracy_given_format` (share correct among those) and `{train,test}/responses`. Pass@1 =
# format_rate x accuracy_given_format exactly, because a correct response is always well formed. A
# run written before accuracy_given_format existed gets it from that identity (pass@1 / format rate);
# one without `responses` has values but no pooled interval.

DECOMPOSITION_KEYS = tuple(
    f"{split}/{key}"
    for split in ("train", "test")
    for key in ("pass_at_1", "pass_at_1_low", "format_rate", "accuracy_given_format", "responses")
)


def decomposition_arrays(evals: list[dict]) -> dict[str, np.ndarray]:
    """(E,) arrays of DECOMPOSITION_KEYS from ordered eval rows; nan where a row lacks the key."""
    out = {k: np.array([_nan(r.get(k)) for r in evals], dtype=float) for k in DECOMPOSITION_KEYS}
    for split in ("train", "test"):
        acc, p1, fmt = (out[f"{split}/{k}"] for k in ("accuracy_given_format", "pass_at_1", "format_rate"))
        derive = ~np.isfinite(acc) & np.isfinite(p1) & np.isfinite(fmt) & (fmt > 0)
        acc[derive] = p1[derive] / fmt[derive]
    return out


def _extra_gain(curve: RunCurve, key: str) -> float:
    values = curve.extra.get(key)
    if values is None or len(values) == 0:
        return float("nan")
    return float(values[-1] - values[0])


def pooled_rates(curves: Sequence[RunCurve], split: str, at: int) -> dict:
    """Format rate and accuracy among well-formed answers at eval index `at` (0: base, -1: final),
    pooled over the seeds' responses, each with its 95% Wilson interval (None without counts).

    Pooling counts every response once, so the interval is the sampling error of the responses, not
    the between-seed spread (the paired bootstraps elsewhere carry that).
    """
    from rftlab.evaluation import wilson_interval  # numbers only; no model is loaded

    def column(key: str) -> np.ndarray:
        return np.array([c.extra[key][at] if len(c.extra.get(key, ())) else np.nan for c in curves], dtype=float)

    p1, fmt, n = column(f"{split}/pass_at_1"), column(f"{split}/format_rate"), column(f"{split}/responses")
    acc = column(f"{split}/accuracy_given_format")
    out: dict = {"format_rate": None, "accuracy_given_format": None, "pass_at_1": None, "responses": None}
    if not curves or not np.isfinite(fmt).any():
        return out
    if np.isfinite(n).all() and np.isfinite(p1).all() and np.isfinite(fmt).all():
        responses = float(n.sum())
        formatted = float(np.round(fmt * n).sum())
        correct = float(np.round(p1 * n).sum())
        out["responses"] = int(responses)
        out["pass_at_1"] = correct / responses if responses else None
        out["format_rate"] = _rate(formatted, responses, wilson_interval)
        out["accuracy_given_format"] = _rate(correct, formatted, wilson_interval)
        return out
    out["pass_at_1"] = _num(float(np.nanmean(p1)))
    out["format_rate"] = {"value": _num(float(np.nanmean(fmt))), "low": None, "high": None, "n": None}
    if np.isfinite(acc).any():
        out["accuracy_given_format"] = {"value": _num(float(np.nanmean(acc))), "low": None, "high": None, "n": None}
    return out


def _rate(successes: float, n: float, wilson) -> dict | None:
    if n <= 0:
        return None
    low, high = wilson(successes, int(n))
    return {"value": _num(successes / n), "low": _num(low), "high": _num(high), "n": int(n)}


def decomposition_summary(curves: Sequence[RunCurve]) -> dict:
    """Base and final format rate and accuracy-given-format per split (pooled Wilson), and which moved.

    `moved[split][factor]` is "up" / "down" when the final's Wilson interval lies wholly above / below
    the base's, else "flat" (the intervals overlap), None when there is no interval.
    """
    out: dict = {}
    for split in ("train", "test"):
        base, final = pooled_rates(curves, split, 0), pooled_rates(curves, split, -1)
        moved = {}
        for factor in ("format_rate", "accuracy_given_format"):
            b, f = base[factor], final[factor]
            if not b or not f or b.get("low") is None or f.get("low") is None:
                moved[factor] = None
            else:
                moved[factor] = "up" if f["low"] > b["high"] else "down" if f["high"] < b["low"] else "flat"
        out[split] = {"base": base, "final": final, "moved": moved}
    return out


# ----------------------------------------------------------------------------- ratio of a metric between variants


def paired_ratio(
    variant: Sequence[RunCurve],
    reference: Sequence[RunCurve],
    metric: str,
    ctx: Context = Context(),
    *,
    n_boot: int = BOOTSTRAP,
    seed: int = CI_SEED,
) -> Estimate:
    """mean(variant) / mean(reference) of a per-run metric over the seeds both share, with a 95% bootstrap
    interval that resamples those seeds in pairs ("how much of the reference's gain does the variant reproduce").

    Only defined when the reference's mean is positive in at least 97.5% of the resamples (its own 95%
    interval lies above 0: there is a gain to reproduce); otherwise the estimate is nan (inconclusive).
    """
    if metric_kind(metric) != "seed":
        raise ValueError(f"paired_ratio needs a per-run metric, not the group metric {metric!r}")
    a, b = pair_by_seed(variant, reference)
    va, vb = seed_values(a, metric, ctx), seed_values(b, metric, ctx)
    keep = np.isfinite(va) & np.isfinite(vb)
    va, vb = va[keep], vb[keep]
    n = len(va)
    nan = Estimate(float("nan"), float("nan"), float("nan"), n)
    if n == 0 or vb.mean() <= 0:
        return nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # (n_boot, S): pairs stay together
    num, den = va[idx].mean(axis=1), vb[idx].mean(axis=1)
    positive = den > 0
    if positive.mean() < 0.975:
        return Estimate(float(va.mean() / vb.mean()), float("nan"), float("nan"), n)
    ratios = num[positive] / den[positive]
    return Estimate(
        float(va.mean() / vb.mean()), float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975)), n
    )
