"""Statistics on hand-made metric files with known answers, and the verdict rules."""

import numpy as np
import pytest
from synthetic_runs import eval_row, write_run

from rftlab.pipeline import analysis, findings
from rftlab.pipeline.analysis import Context, Estimate


def curve(train, test, *, every=10, per_round=1, seed=0, rounds=None, correct=None):
    """A RunCurve from eval points every `every` rounds; `per_round` rollouts each round."""
    rows = []
    n = (len(train) - 1) * every
    for r in range(1, n + 1):
        c = correct[r - 1] if correct is not None else 0.5
        rows.append({"round": r, "split": "train_round", "correct/mean": c, "rollouts_total": r * per_round})
    for i, (a, b) in enumerate(zip(train, test, strict=True)):
        rows.append(eval_row(i * every, i * every * per_round, a, b))
    return analysis.curve_from_rows(rows, seed=seed, total_rounds=rounds if rounds is not None else n)


# ----------------------------------------------------------------------------- per-run metrics


def test_convergence_round_and_rollouts():
    c = curve([0.2, 0.5, 0.95, 0.8, 1.0], [0.1] * 5, every=10, per_round=4)
    ctx = Context()
    assert analysis.METRICS["conv_round"](c, ctx) == 20
    assert analysis.METRICS["conv_rollouts"](c, ctx) == 80
    never = curve([0.2, 0.5, 0.6], [0.1] * 3, every=10, rounds=20)
    assert analysis.METRICS["conv_round"](never, ctx) is None
    assert analysis.METRICS["conv_round_censored"](never, ctx) == 20
    assert analysis.estimate([c, never], "never_frac").value == 0.5


def test_area_under_curve_known_values():
    x = np.array([0.0, 10.0, 20.0])
    # linear 0 -> 1 over [0, 20]: area 0.5
    assert analysis.area_normalized(x, np.array([0.0, 0.5, 1.0]), 20) == pytest.approx(0.5)
    # horizon inside the curve: linear 0 -> 0.5 over [0, 10] -> 0.25
    assert analysis.area_normalized(x, np.array([0.0, 0.5, 1.0]), 10) == pytest.approx(0.25)
    # horizon between points: over [0, 15]: 0 -> 0.75 linear -> 0.375
    assert analysis.area_normalized(x, np.array([0.0, 0.5, 1.0]), 15) == pytest.approx(0.375)
    # beyond the last point: flat extension; [0,20] area 10 + [20,40] at 1.0 area 20 -> 30/40
    assert analysis.area_normalized(x, np.array([0.0, 0.5, 1.0]), 40) == pytest.approx(0.75)


def test_auc_uses_the_rollout_axis():
    slow = curve([0.0, 1.0], [0.0, 0.0], every=10, per_round=1)  # 10 rollouts to reach 1
    wide = curve([0.0, 1.0], [0.0, 0.0], every=10, per_round=4)  # 40 rollouts to reach 1
    ctx = analysis.layer_context({"a": [slow], "b": [wide]})
    assert ctx.rollout_horizon == 10 and ctx.round_horizon == 10
    assert analysis.METRICS["auc_rollouts"](slow, ctx) == pytest.approx(0.5)
    assert analysis.METRICS["auc_rollouts"](wide, ctx) == pytest.approx(0.125)  # 0 -> 0.25 over 10 rollouts
    assert analysis.METRICS["auc_rounds"](wide, ctx) == pytest.approx(0.5)  # same speed per round


def test_online_correct_is_share_of_correct_rollouts():
    c = curve([0.0, 1.0], [0.0, 0.0], every=4, per_round=2, correct=[0.0, 0.5, 1.0, 1.0])
    # rollouts: 2 per round; correct per round 0, 1, 2, 2 -> first 4 rollouts: 1 correct; all 8: 5
    assert analysis.online_correct(c, 4) == pytest.approx(0.25)
    assert analysis.online_correct(c, 8) == pytest.approx(5 / 8)
    assert analysis.online_correct(c, 5) == pytest.approx(2 / 5)  # half of round 3


def test_generalization_and_max_drop():
    c = curve([0.3, 0.9, 1.0, 1.0], [0.2, 0.5, 0.3, 0.4])
    ctx = Context()
    assert analysis.METRICS["test_gain"](c, ctx) == pytest.approx(0.2)
    assert analysis.METRICS["test_best"](c, ctx) == pytest.approx(0.5)
    assert analysis.METRICS["test_best_gain"](c, ctx) == pytest.approx(0.3)
    assert analysis.METRICS["test_max_drop"](c, ctx) == pytest.approx(0.2)
    assert analysis.max_drop(np.array([0.1, 0.2, 0.3])) == 0.0


def test_across_seed_std_over_time():
    a = curve([0.0, 0.0], [0.2, 0.4], seed=0)
    b = curve([0.0, 0.0], [0.4, 0.8], seed=1)
    # std (ddof=1) at each eval: 0.1414, 0.2828 -> mean 0.2121
    assert analysis.estimate([a, b], "test_seed_std").value == pytest.approx(np.sqrt(2) * 0.15)
    assert np.isnan(analysis.estimate([a], "test_seed_std").value)


def test_curve_keeps_the_latest_row_of_a_repeated_round(tmp_path):
    rows = [eval_row(0, 0, 0.1, 0.1), eval_row(10, 10, 0.2, 0.2), eval_row(10, 10, 0.7, 0.3)]
    write_run(tmp_path / "r", {"seed": 3, "train": {"rounds": 10}}, rows)
    c = analysis.load_run(tmp_path / "r")
    assert c.seed == 3 and c.total_rounds == 10 and list(c.train) == [0.1, 0.7]


# ----------------------------------------------------------------------------- bootstrap and pairs


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(200):
        x = rng.normal(0.5, 0.1, size=20)
        est = analysis.bootstrap_ci(x, n_boot=500, seed=1)
        covered += est.low <= 0.5 <= est.high
    assert covered >= 170  # nominal 95% (percentile bootstrap runs a bit narrow at n = 20)
    x = rng.normal(0.5, 0.1, size=10)
    a, b = analysis.bootstrap_ci(x), analysis.bootstrap_ci(x)
    assert a == b and a.low < a.value < a.high and a.n == 10
    assert analysis.bootstrap_ci([np.nan, 1.0, 1.0]).n == 2  # undefined values are left out
    assert analysis.bootstrap_ci([]).n == 0


def test_paired_difference_of_a_constant_shift_is_exact():
    base = [curve([0.3, 0.5 + 0.1 * s], [0.2, 0.2 + 0.05 * s], seed=s) for s in range(5)]
    shifted = [curve([0.3, 0.6 + 0.1 * s], [0.2, 0.3 + 0.05 * s], seed=s) for s in range(5)]
    est = analysis.paired_difference(shifted, base, "test_final")
    assert est.value == pytest.approx(0.1) and est.low == pytest.approx(0.1) and est.high == pytest.approx(0.1)
    unpaired = analysis.estimate(shifted, "test_final")
    assert unpaired.high - unpaired.low > 0.05  # between-seed spread that pairing removes


def test_pairing_uses_shared_seeds_only():
    a = [curve([0.0, 1.0], [0.0, 0.5], seed=s) for s in (0, 1, 2)]
    b = [curve([0.0, 1.0], [0.0, 0.3], seed=s) for s in (1, 2, 3)]
    pa, pb = analysis.pair_by_seed(a, b)
    assert [c.seed for c in pa] == [1, 2] == [c.seed for c in pb]
    assert analysis.paired_difference(a, b, "test_final").n == 2


def test_group_metric_paired_difference():
    a = [curve([0.0, 0.0], [0.2 + 0.2 * s, 0.2], seed=s) for s in range(4)]
    b = [curve([0.0, 0.0], [0.2, 0.2], seed=s) for s in range(4)]
    est = analysis.paired_difference(a, b, "test_seed_std")
    assert est.value > 0 and est.n == 4


def test_mean_curve_band():
    cs = [curve([0.0, 0.5, 1.0], [0.0] * 3, seed=s) for s in range(4)]
    xs, mean, low, high = analysis.mean_curve(cs, x="rollouts")
    assert list(xs) == [0, 10, 20] and list(mean) == [0.0, 0.5, 1.0] and np.all(low <= mean) and np.all(mean <= high)


# ----------------------------------------------------------------------------- verdicts


def E(low, high, n=5):
    return Estimate((low + high) / 2, low, high, n)


@pytest.mark.parametrize(
    "rule, t, est, expected",
    [
        ("gt", 0.0, E(0.01, 0.2), "agrees"),
        ("gt", 0.0, E(-0.2, -0.01), "disagrees"),
        ("gt", 0.0, E(-0.1, 0.1), "inconclusive"),
        ("gt", 0.9, E(0.95, 1.0), "agrees"),
        ("gt", 0.9, E(0.5, 0.9), "disagrees"),
        ("lt", 0.0, E(-0.2, -0.01), "agrees"),
        ("lt", 0.0, E(0.0, 0.3), "disagrees"),
        ("lt", 0.0, E(-0.1, 0.1), "inconclusive"),
        ("at_most", 0.02, E(-0.1, 0.01), "agrees"),
        ("at_most", 0.02, E(0.01, 0.2), "disagrees"),
        ("at_most", 0.02, E(-0.05, 0.2), "inconclusive"),
        ("differs", 0.02, E(0.03, 0.1), "agrees"),
        ("differs", 0.02, E(-0.1, -0.03), "agrees"),
        ("differs", 0.02, E(-0.01, 0.015), "disagrees"),
        ("differs", 0.02, E(-0.01, 0.1), "inconclusive"),
        ("gt", 0.0, E(0.5, 0.6, n=2), "inconclusive"),  # too few seeds
        ("gt", 0.0, Estimate(float("nan"), float("nan"), float("nan"), 5), "inconclusive"),
    ],
)
def test_verdict_rules(rule, t, est, expected):
    assert findings.verdict(rule, t, est) == expected


def test_combining_verdicts():
    assert findings.combine_all(["agrees", "agrees"]) == "agrees"
    assert findings.combine_all(["agrees", "inconclusive"]) == "inconclusive"
    assert findings.combine_all(["agrees", "disagrees"]) == "disagrees"
    assert findings.combine_any(["disagrees", "agrees"]) == "agrees"
    assert findings.combine_any(["disagrees", "disagrees"]) == "disagrees"
    assert findings.combine_any(["disagrees", "inconclusive"]) == "inconclusive"
    assert findings.combine_any([]) == "inconclusive"


def _groups():
    """ref learns to 1.0; 'flat' never learns; 'same' equals ref up to tiny noise. 5 seeds each."""
    ref = [curve([0.3, 0.8, 1.0], [0.2, 0.3, 0.35 + 0.01 * s], seed=s) for s in range(5)]
    flat = [curve([0.3, 0.3, 0.3], [0.2, 0.2, 0.2 + 0.001 * s], seed=s) for s in range(5)]
    same = [curve([0.3, 0.8, 1.0], [0.2, 0.3, 0.351 + 0.01 * s], seed=s) for s in range(5)]
    return {"ref": ref, "flat": flat, "same": same}


def test_claims_on_synthetic_groups():
    groups = _groups()
    ctx = analysis.layer_context(groups)
    claims = [
        {
            "finding": "flat fails",
            "variants": ["flat"],
            "all_of": [
                {"metric": "train_final", "compare": "value", "rule": "lt", "threshold": 0.9},
                {"metric": "train_final", "compare": "paired", "rule": "lt", "threshold": 0.0},
            ],
        },
        {
            "finding": "same is no better",
            "metric": "test_final",
            "variants": ["same"],
            "rule": "at_most",
            "threshold": 0.02,
        },
        {"finding": "every variant beats ref", "metric": "test_final", "rule": "gt", "threshold": 0.0},
        {
            "finding": "some variant learns",
            "metric": "train_final",
            "compare": "value",
            "rule": "gt",
            "threshold": 0.9,
            "combine": "any",
        },
    ]
    out = findings.evaluate_claims("L", claims, groups, "ref", ctx)
    by = {(f["finding"], f["variant"]): f for f in out}
    assert by[("flat fails", "flat")]["verdict"] == "agrees"
    assert by[("same is no better", "same")]["verdict"] == "agrees"
    assert by[("every variant beats ref", "flat")]["verdict"] == "disagrees"
    assert by[("every variant beats ref", "same")]["verdict"] == "agrees"  # +0.001 on every seed
    any_row = by[("some variant learns", "ref, flat, same")]
    assert any_row["verdict"] == "agrees" and any_row["per_variant"]["flat"] == "disagrees"
    for f in out:
        assert set(f) >= {"finding", "layer", "verdict", "numbers", "rule", "ours"}
        assert f["verdict"] in findings.VERDICTS and f["numbers"]
        for n in f["numbers"]:
            assert {"value", "low", "high", "n", "metric", "verdict"} <= set(n)


def test_claims_flip_with_the_data():
    """The verdict follows the data: the same claim on swapped groups flips."""
    groups = _groups()
    claim = [{"finding": "x", "metric": "train_final", "variants": ["flat"], "rule": "lt", "threshold": 0.0}]
    ctx = analysis.layer_context(groups)
    assert findings.evaluate_claims("L", claim, groups, "ref", ctx)[0]["verdict"] == "agrees"
    swapped = {"ref": groups["flat"], "flat": groups["ref"]}
    assert findings.evaluate_claims("L", claim, swapped, "ref", ctx)[0]["verdict"] == "disagrees"
    missing = {"ref": groups["ref"], "flat": []}
    assert findings.evaluate_claims("L", claim, missing, "ref", ctx)[0]["verdict"] == "inconclusive"
