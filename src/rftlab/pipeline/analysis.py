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
