"""`rftlab bandit`: the run interface, errors, help, and a tiny pipeline."""

import argparse
import json

import pytest

from rftlab.bandit.pipeline import Scale
from rftlab.commands.bandit import add_parser, main, run_bandit_pipeline
from rftlab.errors import ConfigError

RUN = "run --arms {K} --p0 {p0} --optimizer sgd --lr 1.0 --advantage {adv} --rollouts 2 --seeds 50 --rounds 7 --no-progress"


def _parse(argv):
    parser = argparse.ArgumentParser(prog="rftlab")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bandit", *argv])


def test_clip_flags_take_the_configs_names_and_keep_the_old_spellings():
    base = RUN.format(K=10, p0=0.1, adv="grpo").split() + ["--out", "unused"]
    new = _parse(base + ["--clip-eps-low", "0.1", "--clip-eps-high", "0.3"])
    old = _parse(base + ["--clip-eps", "0.1", "--clip-high", "0.3"])
    assert (new.clip_eps_low, new.clip_eps_high) == (old.clip_eps_low, old.clip_eps_high) == (0.1, 0.3)
    assert _parse(base).clip_eps_high is None  # then the upper side follows --clip-eps-low


def test_run_writes_metrics_per_round(tmp_path):
    argv = RUN.format(K=1000, p0=0.1, adv="grpo").split() + ["--out", str(tmp_path)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(1, 8))
    assert all({"optimal_mass_mean", "optimal_mass_std"} <= r.keys() for r in rows)
    assert all(0.0 <= r["optimal_mass_mean"] <= 1.0 for r in rows)
    assert (tmp_path / "optimal_mass.png").exists() and (tmp_path / "config.json").exists()


@pytest.mark.parametrize("env", ["sequence", "correlated"])
def test_run_other_envs(tmp_path, env):
    argv = [
        "run",
        "--env",
        env,
        "--arms",
        "16",
        "--seeds",
        "20",
        "--rounds",
        "3",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    argv += [
        "--updates-per-batch",
        "2",
        "--clip-eps-low",
        "0.1",
        "--reward-design",
        "pm1",
        "--optimizer",
        "adam",
        "--lr",
        "0.1",
    ]
    assert main(argv) == 0
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3


@pytest.mark.parametrize(
    "K,p0,adv,option",
    [
        (1000, 1.5, "none", "--p0"),
        (1000, 0.0, "none", "--p0"),
        (1, 0.1, "none", "--arms"),
        (1000, 0.1, "bogus", "--advantage"),
    ],
)
def test_bad_input_raises_config_error(tmp_path, K, p0, adv, option, capsys):
    args = _parse(RUN.format(K=K, p0=p0, adv=adv).split() + ["--out", str(tmp_path / "o")])
    with pytest.raises(ConfigError, match=option):
        args.func(args)
    assert not (tmp_path / "o").exists()
    assert main(RUN.format(K=K, p0=p0, adv=adv).split() + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0]


@pytest.mark.parametrize("sub", [[], ["run"], ["pipeline"], ["theory"]])
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        _parse([*sub, "--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_theory_command(tmp_path, capsys):
    assert main(["theory", "--arms", "100", "--p0", "0.05", "--rounds", "20", "--out", str(tmp_path)]) == 0
    assert len((tmp_path / "theory.jsonl").read_text().splitlines()) == 21
    assert "P(no correct rollout" in capsys.readouterr().out


def test_tiny_pipeline_writes_report(tmp_path):
    findings = run_bandit_pipeline(
        tmp_path, seed=0, progress=False, scale=Scale(seeds=40, rounds=30, seq_seeds=20, seq_rounds=10)
    )
    on_disk = json.loads((tmp_path / "findings.json").read_text())
    assert on_disk == json.loads(json.dumps(findings))
    assert {f["layer"] for f in findings} >= {"L0", "L1", "L2", "L3", "L4", "adaptive"}
    assert all(f["verdict"] in {"agrees", "disagrees", "inconclusive"} for f in findings)
    assert not any("quick" in f for f in findings)  # the full scale's verdicts carry no smoke-test mark
    # rules state their thresholds as numbers, not as the name of the constant behind them
    assert not any("DELTA" in f["finding"] for f in findings)
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(list(tmp_path.glob("*.png"))) >= 5


def test_run_prints_the_held_out_mass_where_the_env_has_one(tmp_path, capsys):
    common = ["--arms", "16", "--seeds", "10", "--rounds", "3", "--no-progress"]
    assert main(["run", "--env", "correlated", *common, "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    final = json.loads((tmp_path / "c" / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"train     optimal mass {final['optimal_mass_mean']:.4f}" in out
    assert f"held-out  optimal mass {final['test_optimal_mass_mean']:.4f}" in out
    assert main(["run", "--env", "karmed", *common, "--out", str(tmp_path / "k")]) == 0
    out = capsys.readouterr().out
    assert "train     optimal mass" in out and "held-out  none: --env karmed has no held-out instances" in out


def test_theory_output_starts_with_a_header(capsys):
    assert main(["theory", "--arms", "100", "--p0", "0.05", "--rounds", "20", "--lr", "0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("K-armed minimalist bandit: K=100 arms") and "p0=0.05" in lines[0]
    assert "lr 0.5" in lines[0] and "exact:" in lines[1] and lines[2].startswith("round")


def test_quick_pipeline_findings_are_marked_smoke_only(tmp_path, monkeypatch, capsys):
    import rftlab.commands.bandit as bandit_command

    tiny = Scale(seeds=40, rounds=30, seq_seeds=20, seq_rounds=10)
    findings = run_bandit_pipeline(tmp_path, quick=True, seed=0, progress=False, scale=tiny)
    on_disk = json.loads((tmp_path / "findings.json").read_text())
    assert on_disk == json.loads(json.dumps(findings))
    assert all(f["quick"] is True and "cannot support a verdict" in f["caveat"] for f in on_disk)
    assert json.loads((tmp_path / "bandit.json").read_text())["quick"] is True
    monkeypatch.setattr(bandit_command, "run_bandit_pipeline", lambda out, **kw: findings)
    assert main(["pipeline", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(", smoke only]" in line for line in lines[: len(findings)])
    assert "cannot support a verdict" in lines[len(findings)]


def test_positive_weight_reaches_the_simulation(tmp_path):
    """--positive-weight is w_reinforce's lambda: lambda = 1 is the {-1, 1} reward without an advantage."""
    base = "run --arms 50 --p0 0.1 --seeds 30 --rounds 5 --no-progress".split()

    def final_mass(extra, out):
        assert main(base + extra + ["--out", str(tmp_path / out)]) == 0
        rows = (tmp_path / out / "metrics.jsonl").read_text().splitlines()
        return json.loads(rows[-1])["optimal_mass_mean"]

    w1 = final_mass(["--advantage", "w_reinforce", "--positive-weight", "1"], "w1")
    pm1 = final_mass(["--reward-design", "pm1"], "pm1")
    w01 = final_mass(["--advantage", "w_reinforce"], "w01")
    assert w1 == pm1 and w01 != pm1
    for extra, message in (
        (["--positive-weight", "-1"], "--positive-weight must be >= 0"),
        (["--reward-design", "pm1"], "--reward-design pm1 does not suit --advantage w_reinforce; allowed: binary"),
    ):
        args = _parse(base + ["--advantage", "w_reinforce", *extra, "--out", str(tmp_path / "bad")])
        with pytest.raises(ConfigError, match=message):
            args.func(args)
    assert not (tmp_path / "bad").exists()


def test_adaptive_layer_findings_are_typed_and_the_theory_check_agrees():
    from rftlab.bandit.pipeline import ADAPTIVE, Lab, layer_adaptive

    findings, curves = layer_adaptive(Lab(Scale(seeds=30, rounds=20, seq_seeds=10, seq_rounds=10), 0, False))
    assert [f.layer for f in findings] == ["adaptive"] * 5
    assert findings[0].verdict == "agrees"  # exact identities: unbiased baseline, (1 + lambda) scaling
    assert all(f.verdict in {"agrees", "disagrees", "inconclusive"} for f in findings)
    assert set(curves["adaptive"]) == set(ADAPTIVE)
    table = findings[-1].to_json()["numbers"]["minus_minimalist"]
    assert set(table) == set(ADAPTIVE) - {"minimalist"}
    for comparison in table.values():  # speed, samples, stability, generalization: (mean, low, high) each
        assert set(comparison) == {
            "rounds_to_half",
            "samples_to_half",
            "test_downward",
            "final_test_mass",
            "final_train_mass",
        }
        assert all(low <= mean <= high for mean, low, high in comparison.values())
