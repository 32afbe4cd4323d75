"""Issue 12 points 1-2 in the pipeline: the saturation rule, the format x accuracy decomposition, the
ratio comparison, the `controls` and `post-saturation` layers of paper.yaml, and their findings.

Curves are synthetic: hand-made arrays, or run directories written by `control_train` below (a
stand-in for the trainer whose curves are known functions of the config), so every expected verdict
follows from numbers stated here, not from a training run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from synthetic_runs import synthetic_train, write_run

from rftlab.cli import main
from rftlab.config import ConfigError
from rftlab.evaluation import Z_95, wilson_interval
from rftlab.pipeline import analysis
from rftlab.pipeline.analysis import RunCurve, curve_from_rows, paired_ratio, saturation_index
from rftlab.pipeline.findings import evaluate_claims, validate_claim
from rftlab.pipeline.spec import load_spec, plan
from rftlab.pipeline.summarize import summarize
from rftlab.pipeline.sweep import run_sweep
from rftlab.report.html import build_report

MY_LAYERS = ["controls", "post-saturation"]


def _curve(lows, test=None, rounds=None, seed=0) -> RunCurve:
    lows = np.asarray(lows, dtype=float)
    rounds = np.arange(len(lows)) * 10.0 if rounds is None else np.asarray(rounds, dtype=float)
    test = np.linspace(0.2, 0.4, len(lows)) if test is None else np.asarray(test, dtype=float)
    return RunCurve(
        seed=seed,
        rounds=rounds,
        rollouts=rounds.copy(),
        train=np.minimum(1.0, lows + 0.1),
        test=test,
        total_rounds=int(rounds[-1]),
        extra={"train/pass_at_1_low": lows},
    )


# ----------------------------------------------------------------------------- the saturation rule


def test_wilson_bound_of_0_8_at_16_samples_means_16_of_16():
    # the rule's threshold, justified in analysis: 16/16 gives 16 / (16 + z^2) = 0.806; 15/16 stays below 0.8
    assert wilson_interval(16, 16)[0] == pytest.approx(16 / (16 + Z_95**2))
    assert wilson_interval(16, 16)[0] >= analysis.SATURATION_LOW > wilson_interval(15, 16)[0]
    assert max(wilson_interval(c, 34)[0] for c in range(35)) < 0.9 <= wilson_interval(35, 35)[0]


def test_saturates_at_the_first_of_k_consecutive_evals():
    curve = _curve([0.0, 0.3, 0.85, 0.9, 0.95], test=[0.2, 0.25, 0.3, 0.32, 0.41])
    assert saturation_index(curve) == 2
    assert analysis.saturation_round(curve) == 20.0
    assert analysis.post_saturation_test_gain(curve) == pytest.approx(0.41 - 0.3)


def test_never_saturates():
    curve = _curve([0.0, 0.5, 0.79, 0.7999, 0.6])
    assert saturation_index(curve) is None and analysis.saturation_round(curve) is None
    assert math.isnan(analysis.post_saturation_test_gain(curve))


def test_saturates_then_drops_keeps_the_first_saturation_and_can_lose_test():
    curve = _curve([0.0, 0.85, 0.9, 0.4, 0.3], test=[0.2, 0.5, 0.45, 0.3, 0.35])
    assert saturation_index(curve) == 1
    assert analysis.post_saturation_test_gain(curve) == pytest.approx(0.35 - 0.5)  # a fall is reported as such


def test_a_single_eval_above_the_bound_is_not_saturation():
    assert saturation_index(_curve([0.0, 0.9, 0.5, 0.95, 0.1])) is None
    assert saturation_index(_curve([0.0, 0.1, 0.2, 0.3, 0.9])) is None  # the last eval alone: no k-th eval


def test_a_bound_equal_to_the_threshold_counts_and_k_is_a_parameter():
    assert saturation_index(_curve([0.0, 0.8, 0.8])) == 1  # >= 0.8: a tie saturates
    assert saturation_index(_curve([0.0, 0.8, 0.8]), k=3) is None
    assert saturation_index(_curve([0.0, 0.8, 0.8]), k=1) == 1
    assert saturation_index(_curve([0.85, 0.85, 0.85])) == 0  # saturated from the base model on


def test_a_run_without_train_bounds_never_saturates():
    curve = _curve([0.9, 0.9])
    curve.extra = {}
    assert saturation_index(curve) is None
    assert saturation_index(_curve([np.nan, 0.9, np.nan, 0.9])) is None


def test_saturation_summary_pairs_each_seed_with_itself():
    curves = [
        _curve([0.0, 0.85, 0.9, 0.95], test=[0.2, 0.3, 0.35, 0.3 + d], seed=s) for s, d in enumerate([0.10, 0.12, 0.08])
    ] + [_curve([0.0, 0.1, 0.2, 0.3], seed=3)]
    summary = analysis.saturation_summary(curves, n_boot=200)
    assert (summary["saturated"], summary["seeds"]) == (3, 4)
    assert summary["sat_round"]["value"] == 10.0
    assert summary["post_sat_test_gain"]["value"] == pytest.approx(0.10) and summary["post_sat_test_gain"]["n"] == 3
    assert summary["post_sat_test_gain"]["low"] > 0
    assert summary["post_sat_rounds"]["value"] == pytest.approx(20.0)
    assert "0.8" in summary["rule"] and "2 consecutive" in summary["rule"]


# ----------------------------------------------------------------------------- format x accuracy


def _eval(round_, train, test, *, fmt=None, acc=None, responses=None, train_low=None):
    row = {
        "round": round_,
        "split": "eval",
        "rollouts_total": round_,
        "train/pass_at_1": train,
        "train/pass_at_1_low": train_low if train_low is not None else max(0.0, train - 0.1),
        "test/pass_at_1": test,
    }
    if fmt is not None:
        row["test/format_rate"] = fmt
    if acc is not None:
        row["test/accuracy_given_format"] = acc
    if responses is not None:
        row["test/responses"] = responses
    return row


def test_an_old_run_without_accuracy_gets_it_from_the_identity_and_tolerates_missing_keys():
    old = curve_from_rows([_eval(0, 0.1, 0.2, fmt=0.4), _eval(10, 0.5, 0.3, fmt=0.0), _eval(20, 0.6, 0.3)])
    acc = old.extra["test/accuracy_given_format"]
    assert acc[0] == pytest.approx(0.5)  # 0.2 / 0.4: a correct answer is always well formed
    assert math.isnan(acc[1]) and math.isnan(acc[2])  # no well-formed answer / no format rate: undefined
    assert math.isnan(old.extra["test/responses"][0])
    assert math.isnan(analysis.METRICS["test_acc_given_format_gain"](old, analysis.Context()))


def test_pooled_rates_and_which_factor_moved():
    # two seeds, 100 test responses each: format 0.30 -> 0.70 (pooled 60/200 -> 140/200), accuracy 2/3 -> 2/3
    rows = [
        [_eval(0, 0.1, 0.2, fmt=0.3, acc=2 / 3, responses=100), _eval(10, 0.9, 0.46667, fmt=0.7, acc=0.66667, responses=100)],
        [_eval(0, 0.1, 0.2, fmt=0.3, acc=2 / 3, responses=100), _eval(10, 0.9, 0.46667, fmt=0.7, acc=0.66667, responses=100)],
    ]  # fmt: skip
    curves = [curve_from_rows(r, seed=s) for s, r in enumerate(rows)]
    summary = analysis.decomposition_summary(curves)["test"]
    base, final = summary["base"], summary["final"]
    assert base["responses"] == 200 and base["format_rate"]["n"] == 200
    assert (base["format_rate"]["low"], base["format_rate"]["high"]) == pytest.approx(
        wilson_interval(60, 200), abs=1e-6
    )
    assert (final["accuracy_given_format"]["low"], final["accuracy_given_format"]["high"]) == pytest.approx(
        wilson_interval(94, 140),
        abs=1e-6,  # 0.46667 x 100 rounds to 47 correct per seed
    )
    assert summary["moved"] == {"format_rate": "up", "accuracy_given_format": "flat"}
    # a split without counts has values and no intervals, and says nothing moved
    train = analysis.decomposition_summary(curves)["train"]
    assert train["base"]["format_rate"] is None and train["moved"]["format_rate"] is None


# ----------------------------------------------------------------------------- ratio of gains


def _gain_curves(gains, seed0=0):
    return [
        RunCurve(seed=seed0 + i, rounds=np.array([0.0, 10.0]), rollouts=np.array([0.0, 10.0]),
                 train=np.array([0.1, 0.9]), test=np.array([0.2, 0.2 + g]), total_rounds=10)
        for i, g in enumerate(gains)
    ]  # fmt: skip


def test_paired_ratio_golden():
    # every pair has ratio 1/2, so every resample's ratio of means is 1/2 too
    est = paired_ratio(_gain_curves([0.1, 0.2, 0.15]), _gain_curves([0.2, 0.4, 0.3]), "test_gain", n_boot=300)
    assert (est.value, est.low, est.high, est.n) == pytest.approx((0.5, 0.5, 0.5, 3))
    # ratio of means, not mean of ratios: (0.1 + 0.3) / (0.1 + 0.1) = 2
    assert paired_ratio(_gain_curves([0.1, 0.3]), _gain_curves([0.1, 0.1]), "test_gain").value == pytest.approx(2.0)


def test_paired_ratio_needs_a_gain_to_reproduce():
    assert math.isnan(paired_ratio(_gain_curves([0.1, 0.1]), _gain_curves([0.0, -0.1]), "test_gain").value)
    wobbly = paired_ratio(_gain_curves([0.1] * 4), _gain_curves([0.3, -0.3, 0.1, -0.05]), "test_gain", n_boot=400)
    assert math.isfinite(wobbly.value) and math.isnan(wobbly.low)  # the reference's interval spans 0
    with pytest.raises(ValueError, match="per-run metric"):
        paired_ratio(_gain_curves([0.1]), _gain_curves([0.1]), "never_frac")


def test_ratio_claims_validate_and_decide():
    claim = {"finding": "f", "metric": "test_gain", "compare": "ratio", "rule": "above", "threshold": 0.5}
    validate_claim("c", claim, ["ref", "v"], "ref")
    with pytest.raises(ConfigError, match="per-run metric"):
        validate_claim("c", {**claim, "metric": "never_frac"}, ["ref", "v"], "ref")
    with pytest.raises(ConfigError, match="compared with itself"):
        validate_claim("c", {**claim, "variants": ["ref"]}, ["ref", "v"], "ref")
    groups = {"ref": _gain_curves([0.2, 0.4, 0.3]), "v": _gain_curves([0.16, 0.3, 0.24]), "w": _gain_curves([0.0] * 3)}
    out = {f["variant"]: f for f in evaluate_claims("L", [claim], groups, "ref", analysis.Context(), n_boot=300)}
    assert out["v"]["verdict"] == "agrees"  # each pair 0.75-0.8: the interval lies above 0.5
    assert out["w"]["verdict"] == "disagrees"  # 0: below 0.5
    assert "v / ref" in out["v"]["ours"] and "mean variant / mean reference" in out["v"]["rule"]


# ----------------------------------------------------------------------------- the layers in paper.yaml


def test_paper_spec_has_the_new_layers_and_quick_plans_them_cheaply():
    spec = load_spec("paper")  # validates full and quick plans of every layer
    controls = spec.layer("controls")
    assert [v.name for v in controls.variants] == ["minimalist", "format", "random"]
    full = plan(spec, layers=MY_LAYERS)
    quick = plan(spec, quick=True, layers=MY_LAYERS)
    rounds = {(r.layer, r.variant): r.config["train"]["rounds"] for r in full}
    assert rounds[("post-saturation", "long4x")] == 4 * rounds[("post-saturation", "minimalist")] == 800
    q_rounds = {(r.layer, r.variant): r.config["train"]["rounds"] for r in quick}
    assert q_rounds[("post-saturation", "long4x")] == 4 * q_rounds[("controls", "minimalist")] == 16
    assert {r.config["objective"]["reward_design"] for r in quick if r.layer == "controls"} == {
        "binary",
        "format",
        "random",
    }
    # the minimalist of both layers is the same run as L0's, shared (run once)
    every = plan(spec)
    l0 = {r.seed: r.run for r in every if r.layer == "L0-minimalist"}
    for layer in MY_LAYERS:
        assert {r.seed: r.run for r in every if r.layer == layer and r.variant == "minimalist"} == l0


def test_dry_run_of_the_new_layers(tmp_path, capsys):
    code = main(["pipeline", "paper", "--quick", "--dry-run", "--layers", *MY_LAYERS, "--out", str(tmp_path / "p")])
    assert code == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "2 layers, 10 (variant, seed) pairs, 8 distinct runs" in text  # the minimalist is shared
    assert "controls__random" in text and "post-saturation__long4x" in text


# ----------------------------------------------------------------------------- findings from synthetic runs

GAIN = {"binary": 0.3, "format": 0.24, "random": 0.03}  # test gain at 200 rounds before the seed factor
RESPONSES = 64


def _control_rows(config: dict) -> list[dict]:
    """Train Pass@1 1 - 0.75 exp(-r/30) (16 samples: 16/16 from round ~95 on); test Pass@1 = 0.2 + gain x
    min(1, r/200) x (1 + 0.05 seed) + 0.00005 r, always format rate x 2/3 (the accuracy never moves)."""
    seed, rounds = int(config["seed"]), int(config["train"]["rounds"])
    every = int(config["eval"]["every"]) or rounds
    design = config["objective"]["reward_design"]
    rows = []
    for r in range(1, rounds + 1):
        rows.append({"round": r, "split": "train_round", "correct/mean": 0.5, "rollouts_total": r})
    for r in sorted({0, rounds, *range(every, rounds + 1, every)}):
        train = round(16 * (1 - 0.75 * math.exp(-r / 30))) / 16
        test = 0.2 + GAIN[design] * min(1.0, r / 200) * (1 + 0.05 * seed) + 0.00005 * r
        fmt = test * 1.5
        low, high = wilson_interval(train * 16, 16)
        rows.append(
            {
                "round": r,
                "split": "eval",
                "rollouts_total": r,
                "train/pass_at_1": train,
                "train/pass_at_1_low": low,
                "train/pass_at_1_high": high,
                "test/pass_at_1": test,
                "test/format_rate": fmt,
                "test/accuracy_given_format": 2 / 3,
                "test/responses": RESPONSES,
            }
        )
    return sorted(rows, key=lambda row: (row["round"], row["split"] == "eval"))


def control_train(config: dict, out: str, resume: bool) -> dict:
    write_run(out, config, _control_rows(config))
    return json.loads((__import__("pathlib").Path(out) / "summary.json").read_text())


@pytest.fixture(scope="module")
def controls_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("controls")
    run_sweep(
        "paper", out, layers=MY_LAYERS, executor="inline", train_fn=control_train, check_models=False, progress=False
    )
    build_report(out, n_boot=400)
    return out


def test_findings_json_gains_the_controls_and_post_saturation_entries(controls_dir):
    items = json.loads((controls_dir / "findings.json").read_text())
    by = {(f["layer"], f["variant"]): f for f in items}
    # format: each seed's gain ratio is 0.24 k / (0.3 k + 0.01) with k = 1 + 0.05 seed, 0.75-0.77 > 0.5
    assert by[("controls", "format")]["verdict"] == "agrees"
    assert by[("controls", "random")]["verdict"] == "disagrees"  # ~0.09 < 0.5
    # minimalist: format rate rose, accuracy among well-formed answers flat (gain 0 <= 0.02)
    assert by[("controls", "minimalist")]["verdict"] == "agrees"
    # train saturates at round 120 (16/16 at 120 and 160); test keeps rising to round 800
    post = by[("post-saturation", "long4x")]
    assert post["verdict"] == "agrees"
    gain = 0.3 * (1 + 0.05 * np.arange(5)) * (1 - 120 / 200) + 0.00005 * (800 - 120)
    assert post["numbers"][0]["value"] == pytest.approx(gain.mean(), abs=1e-6)
    for f in items:
        if f["layer"] in MY_LAYERS:
            assert f["rule"] and f["verdict"] in ("agrees", "disagrees", "inconclusive") and f["source"] == "llm"


def test_analysis_and_report_show_saturation_and_decomposition(controls_dir):
    result = json.loads((controls_dir / "analysis.json").read_text())
    layer = next(x for x in result["layers"] if x["name"] == "post-saturation")
    long4x = next(v for v in layer["variants"] if v["name"] == "long4x")
    assert long4x["saturation"]["saturated"] == 5 and long4x["saturation"]["sat_round"]["value"] == 120.0
    test = long4x["decomposition"]["test"]
    assert test["moved"] == {"format_rate": "up", "accuracy_given_format": "flat"}
    assert test["base"]["format_rate"]["n"] == 5 * RESPONSES
    html = (controls_dir / "report.html").read_text()
    assert "Post-saturation generalization" in html and "format rate × accuracy among well-formed answers" in html
    # a figure per layer, and the format x accuracy figure for controls (its claims are about the two factors)
    assert html.count('src="data:image/png;base64,') == len(MY_LAYERS) + 1
    assert [p.name for p in sorted((controls_dir / "figures").glob("*_format.png"))] == ["00_controls_format.png"]


def test_old_runs_without_the_new_keys_still_summarise_and_report(tmp_path):
    # the shared synthetic runs write neither accuracy_given_format nor responses nor train/format_rate
    run_sweep(
        "paper",
        tmp_path,
        layers=MY_LAYERS,
        executor="inline",
        train_fn=synthetic_train,
        check_models=False,
        progress=False,
    )
    result, _ = summarize(tmp_path, n_boot=100)
    variant = result["layers"][0]["variants"][0]
    assert variant["decomposition"]["test"]["final"]["format_rate"]["low"] is None  # no counts: no interval
    assert variant["decomposition"]["test"]["final"]["accuracy_given_format"]["value"] is not None  # identity
    build_report(tmp_path, n_boot=100)
    assert (tmp_path / "report.html").is_file()


def test_the_long_horizon_run_does_not_lead_its_difficulty_group(tmp_path):
    # every run of these layers shares one difficulty estimate; its cheapest run computes it first,
    # so the 800-round run does not hold the others back for its whole length
    from rftlab.pipeline import sweep

    tasks = sweep._tasks(plan(load_spec("paper"), layers=MY_LAYERS), tmp_path, 1)
    assert len({t.group for t in tasks}) == 1
    assert sweep.estimate_seconds(tasks[0].config) == min(sweep.estimate_seconds(t.config) for t in tasks)
    assert "long4x" not in tasks[0].name and "long4x" in tasks[1].name  # then the longest first
