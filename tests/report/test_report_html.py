"""The pipeline report on synthetic run directories: it builds, has every layer, real figures, sane JSON."""

import base64
import json
import re
import shutil

import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml
from synthetic_runs import synthetic_train

from rftlab.cli import main
from rftlab.commands.pipeline import run_pipeline
from rftlab.pipeline.findings import VERDICTS
from rftlab.report.html import build_report

SPEC = {
    "name": "synthetic",
    "description": "two layers on synthetic runs",
    "base": "tiny",
    "seeds": 4,
    "overrides": {"train.rounds": 40, "eval.every": 10},
    "layers": [
        {
            "name": "L2-rollouts",
            "finding": "more rollouts learn faster per round",
            "reference": "G1",
            "variants": {"G1": {}, "G4": {"rollout.rollouts_per_round": 4}},
            "claims": [
                {"finding": "faster per round", "metric": "auc_rounds", "rule": "gt", "threshold": 0.0},
                {"finding": "slower per round", "metric": "auc_rounds", "rule": "lt", "threshold": 0.0},
            ],
        },
        {
            "name": "L3-reward",
            "finding": "negative rewards make training fail",
            "reference": "binary",
            "variants": {"binary": {}, "pm1": {"objective.reward_design": "pm1"}},
            "claims": [
                {
                    "finding": "pm1 fails",
                    "all_of": [
                        {"metric": "train_final", "compare": "value", "rule": "lt", "threshold": 0.9},
                        {"metric": "train_final", "compare": "paired", "rule": "lt", "threshold": 0.0},
                    ],
                }
            ],
        },
    ],
}


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe")
    run_pipeline(SPEC, out, executor="inline", train_fn=synthetic_train, check_models=False, progress=False)
    return out


def test_report_has_every_layer_and_embedded_figures(pipeline_dir):
    html = (pipeline_dir / "report.html").read_text()
    for layer in SPEC["layers"]:
        assert f'id="{layer["name"]}"' in html and layer["finding"] in html
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == len(SPEC["layers"])
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "http://" not in html and "https://" not in html  # self-contained


def test_figures_are_not_empty(pipeline_dir):
    pngs = sorted((pipeline_dir / "figures").glob("*.png"))
    assert len(pngs) == len(SPEC["layers"])
    for png in pngs:
        pixels = mpimg.imread(png)[..., :3]
        colored = np.abs(pixels - pixels.mean(axis=-1, keepdims=True)).sum(axis=-1) > 0.1
        assert colored.mean() > 0.005, png  # colored curves, not just axes


def test_findings_json_is_well_formed(pipeline_dir):
    items = json.loads((pipeline_dir / "findings.json").read_text())
    assert isinstance(items, list) and len(items) == 2 + 1
    for f in items:
        assert {"finding", "layer", "verdict", "numbers", "rule", "variant", "ours"} <= set(f)
        assert f["verdict"] in VERDICTS
        for n in f["numbers"]:
            assert n["low"] is None or n["low"] <= n["value"] <= n["high"]


def test_verdicts_follow_the_synthetic_data(pipeline_dir):
    by = {f["finding"]: f["verdict"] for f in json.loads((pipeline_dir / "findings.json").read_text())}
    # synthetic_train: G4 learns faster per round on every seed; pm1 never learns
    assert by["faster per round"] == "agrees"
    assert by["slower per round"] == "disagrees"
    assert by["pm1 fails"] == "agrees"


def test_metrics_tables_and_analysis(pipeline_dir):
    analysis = json.loads((pipeline_dir / "analysis.json").read_text())
    layer = analysis["layers"][0]
    g4 = next(v for v in layer["variants"] if v["name"] == "G4")
    assert g4["finished"] == 4 and g4["metrics"]["auc_rounds"]["n"] == 4
    assert g4["paired"]["auc_rounds"]["value"] > 0
    html = (pipeline_dir / "report.html").read_text()
    assert "Paired differences" in html and "test_max_drop" in html


def test_report_rebuild_is_identical(pipeline_dir):
    before = (pipeline_dir / "findings.json").read_text()
    html_before = (pipeline_dir / "report.html").read_text()
    assert main(["report", str(pipeline_dir)]) == 0
    assert (pipeline_dir / "findings.json").read_text() == before
    assert (pipeline_dir / "report.html").read_text() == html_before


def test_report_lists_unfinished_runs(tmp_path):
    out = tmp_path / "p"
    run_pipeline(
        SPEC, out, executor="inline", train_fn=synthetic_train, check_models=False, progress=False, report=False
    )
    victim = sorted((out / "runs").iterdir())[0]
    (victim / "summary.json").unlink()
    build_report(out, n_boot=200)
    html = (out / "report.html").read_text()
    assert "Runs missing from this report" in html and "not finished" in html


def test_report_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a pipeline directory" in capsys.readouterr().err


def test_compare_runs(pipeline_dir, tmp_path, capsys):
    runs = sorted(p for p in (pipeline_dir / "runs").iterdir() if "seed0" in p.name)[:3]
    figure = tmp_path / "cmp.png"
    assert main(["compare", *map(str, runs), "--figure", str(figure)]) == 0
    table = capsys.readouterr().out
    for r in runs:
        assert r.name in table
    assert "test final" in table and figure.stat().st_size > 10_000
    assert main(["compare", str(tmp_path)]) == 2


def test_compare_writes_its_figure_beside_the_runs_or_into_out(pipeline_dir, tmp_path, monkeypatch, capsys):
    runs = []
    for r in sorted(p for p in (pipeline_dir / "runs").iterdir() if "seed0" in p.name)[:2]:
        shutil.copytree(r, tmp_path / "runs" / r.name)
        runs.append(str(tmp_path / "runs" / r.name))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["compare", *runs]) == 0
    assert (tmp_path / "runs" / "compare.png").stat().st_size > 10_000 and not list(cwd.iterdir())
    capsys.readouterr()
    assert main(["compare", *runs, "--out", str(tmp_path / "cmp")]) == 0
    table = capsys.readouterr().out
    assert (tmp_path / "cmp" / "compare.png").is_file() and not list(cwd.iterdir())
    assert (tmp_path / "cmp" / "compare.txt").read_text() == table  # the same table, no task warning


def test_compare_warns_when_runs_are_on_different_tasks(pipeline_dir, tmp_path, capsys):
    a, b = sorted(p for p in (pipeline_dir / "runs").iterdir() if "seed0" in p.name)[:2]
    shutil.copytree(b, tmp_path / b.name)
    cfg = yaml.safe_load((tmp_path / b.name / "config.yaml").read_text())
    cfg["data"]["dataset"] = "math500"
    (tmp_path / b.name / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "same")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / b.name), "--out", str(tmp_path / "cmp")]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("warning"))
    assert "data.dataset" in line and "math500" in line and a.name in line and b.name in line
    assert line in (tmp_path / "cmp" / "compare.txt").read_text()


def test_quick_sweep_verdicts_are_marked_smoke_only(pipeline_dir, tmp_path):
    out = tmp_path / "quick"
    shutil.copytree(pipeline_dir, out)
    build_report(out, n_boot=200)
    assert not any("quick" in f for f in json.loads((out / "findings.json").read_text()))
    data = json.loads((out / "pipeline.json").read_text())
    data["options"]["quick"] = True
    (out / "pipeline.json").write_text(json.dumps(data))
    build_report(out, n_boot=200)
    findings = json.loads((out / "findings.json").read_text())
    assert findings and all(f["quick"] is True and "cannot support a verdict" in f["caveat"] for f in findings)
    assert "4 seeds" in findings[0]["caveat"]
    html = (out / "report.html").read_text()
    assert "Smoke test only" in html and html.count("(smoke only)") >= len(findings)
