"""The command line: --help everywhere, one-line errors without tracebacks, non-zero exit."""

import subprocess
import sys

import pytest

from rftlab.cli import build_parser, main


def rftlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rftlab.cli", *args], capture_output=True, text=True, timeout=120)


def subcommands() -> list[list[str]]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    found = []
    for name, sub in action.choices.items():
        found.append([name])
        for inner in sub._actions:
            if getattr(inner, "choices", None) and isinstance(inner.choices, dict):
                found += [[name, child] for child in inner.choices]
    return found


@pytest.mark.parametrize("command", subcommands(), ids=lambda c: " ".join(c))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "tiny", "objective.advantage=bogus"],
            "objective.advantage='bogus' is not allowed; choose one of",
        ),
        (
            ["run", "tiny", "rollout.temperature=-1"],
            "rollout.temperature=-1.0 is out of range; allowed (0, 5]",
        ),
        (["run", "tiny", "modle.name=x"], "unknown config key modle (did you mean model?)"),
        (["run", "/no/such/config.yaml"], "config file not found: /no/such/config.yaml"),
        (["run", "tiny", "data.dataset=/no/such/data.jsonl", "--out", "{tmp}/r"], "/no/such/data.jsonl"),
        (["run", "tiny", "model.name=/no/such/model", "--out", "{tmp}/r2"], "/no/such/model"),
        (["eval", "tiny", "--train-problems", "0"], "--train-problems must be >= 1 (got 0)"),
        (["eval", "tiny", "--samples", "0"], "--samples must be >= 1 (got 0)"),
        (
            ["pipeline", "paper", "--out", "{tmp}/p", "--seeds", "0", "--dry-run"],
            "--seeds=0: expected a positive",
        ),
    ],
)
def test_user_mistakes_print_one_line_and_exit_2(args, message, tmp_path):
    done = rftlab(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert err[-1].startswith("rftlab: error: ") and message in err[-1], done.stderr


def test_config_show_and_fields(capsys):
    assert main(["config", "show", "tiny", "seed=5"]) == 0
    assert "seed: 5" in capsys.readouterr().out
    assert main(["config", "fields"]) == 0
    out = capsys.readouterr().out
    assert "objective.clip_eps_low" in out and "rollout.rollouts_per_round" in out


def test_eval_reports_train_candidates_and_test_or_skips_test(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setenv("RFTLAB_CACHE", str(tmp_path / "cache"))
    common = ["eval", "tiny", "data.test_size=3", "run.threads=1", "--train-problems", "2", "--samples", "2"]
    assert main([*common, "--out", str(tmp_path / "full.json")]) == 0
    full = json.loads((tmp_path / "full.json").read_text())
    assert full["train"]["problems"] == 2 and full["train"]["samples_each"] == 2
    assert 0.0 <= full["train"]["pass_at_1"] <= 1.0
    assert full["test"]["problems"] == 3 and 0.0 <= full["test"]["pass_at_1"] <= 1.0
    assert "test (" in capsys.readouterr().out

    assert main([*common, "--skip-test", "--out", str(tmp_path / "train_only.json")]) == 0
    train_only = json.loads((tmp_path / "train_only.json").read_text())
    assert train_only["test"] is None
    assert train_only["train"]["per_problem"] == full["train"]["per_problem"]  # the cached estimate
    assert "test (" not in capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["run"]])
def test_help_documents_the_cache(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert "RFTLAB_CACHE" in out and "models/smollm2-135m/" in out and "difficulty/" in out


@pytest.mark.parametrize("args", [["config", "fields", "tiny"], ["config", "fields", "--config", "tiny"]])
def test_config_fields_of_a_builtin_shows_its_values(args, capsys):
    assert main(args) == 0
    out = capsys.readouterr().out
    lr = next(line for line in out.splitlines() if line.startswith("optim.lr "))
    assert "*3e-05" in lr  # tiny's lr, marked as differing from the default 1e-05
    assert main(["config", "fields"]) == 0
    assert "1e-05" in next(line for line in capsys.readouterr().out.splitlines() if line.startswith("optim.lr "))
