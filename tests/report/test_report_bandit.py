"""The pipeline report with bandit counterparts: a block per mapped layer, both sources in findings.json."""

import base64
import io
import json
import re

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from synthetic_runs import synthetic_train

from rftlab.bandit import pipeline as bandit_pipeline
from rftlab.bandit.figures import FIGURES
from rftlab.cli import main
from rftlab.commands.pipeline import run_pipeline
from rftlab.files import BANDIT_MANIFEST
from rftlab.pipeline.findings import VERDICTS
from rftlab.pipeline.spec import spec_from_dict, spec_to_dict
from rftlab.report.html import BANDIT_COUNTERPARTS, bandit_counterpart, bandit_counterparts

TINY = bandit_pipeline.Scale(seeds=40, rounds=30, seq_seeds=20, seq_rounds=10)
TINY_IDS = ["L0", "L1", "L2", "L3", "L4"]
NAMES = ["L0-minimalist", "L1-advantage", "L2-rollouts", "L3-reward", "L4-difficulty", "L6-batch"]
SPEC = {
    "name": "synthetic-bandit",
    "description": "every layer with a bandit counterpart, on synthetic runs",
    "base": "tiny",
    "seeds": 2,
    "overrides": {"train.rounds": 20, "eval.every": 10},
    "layers": [
        {
            "name": n,
            "finding": f"{n} finding",
            "reference": "a",
            "variants": {"a": {}, "b": {"rollout.rollouts_per_round": 2}},
            "claims": [{"finding": f"{n} claim", "metric": "auc_rounds", "rule": "gt", "threshold": 0.0}],
        }
        for n in NAMES
    ],
}


def _run(out):
    run_pipeline(
        SPEC, out, executor="inline", train_fn=synthetic_train, check_models=False, progress=False, bandit="quick"
    )


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    """An LLM sweep with `bandit="quick"`, the bandit pipeline at a tiny scale standing in for quick."""
    out = tmp_path_factory.mktemp("combined")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bandit_pipeline.Scale, "of", staticmethod(lambda quick: TINY))
        _run(out)
        stamp = (out / "bandit" / BANDIT_MANIFEST).stat().st_mtime_ns
        _run(out)  # again: the finished bandit run is kept, not redone
        assert (out / "bandit" / BANDIT_MANIFEST).stat().st_mtime_ns == stamp
    torch.set_num_threads(threads)
    return out


def _colored_fraction(b64: str) -> float:
    pixels = mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png")[..., :3]
    return float((np.abs(pixels - pixels.mean(axis=-1, keepdims=True)).sum(axis=-1) > 0.1).mean())


def _block(html: str, layer_id: str) -> str:
    start = html.index(f'<div class="bandit" id="bandit-{layer_id}">')
    return html[start : html.index("</div>", start)]


def test_mapping_table():
    assert [bandit_counterpart(n) for n in NAMES] == ["L0", "L1", "L2", "L3", "L4", None]
    assert set(BANDIT_COUNTERPARTS) == {"L0", "L1", "L2", "L3", "L4"}


def test_each_mapped_layer_has_a_counterpart_block_with_an_image(combined):
    html = (combined / "report.html").read_text()
    for name in NAMES[:5]:
        layer_id = bandit_counterpart(name)
        block = _block(html, layer_id)
        # the block sits in the LLM layer's section, before the next layer's heading
        section = html[html.index(f'<h2 id="{name}">') :]
        assert section.index(f'id="bandit-{layer_id}"') < section.index("<h2", 4)
        images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', block)
        assert images and all(_colored_fraction(i) > 0.005 for i in images), layer_id
        assert 'class="verdict' in block  # its findings, in the same table as the LLM ones
    # the bandit layer with no LLM layer gets its own section
    only = html[html.index('id="bandit-only"') :]
    assert 'id="bandit-next"' in only and "data:image/png;base64," in _block(html, "next")
    assert "http://" not in html and "https://" not in html


def test_findings_json_carries_both_sources(combined):
    items = json.loads((combined / "findings.json").read_text())
    assert {f["source"] for f in items} == {"llm", "bandit"}
    assert all({"finding", "layer", "verdict"} <= set(f) and f["verdict"] in VERDICTS for f in items)
    bandit = [f for f in items if f["source"] == "bandit"]
    assert all("llm_layer" in f for f in bandit)
    shown = {f["layer"]: f["llm_layer"] for f in bandit}
    assert shown == {
        "L0": "L0-minimalist",
        "L1": "L1-advantage",
        "L2": "L2-rollouts",
        "L3": "L3-reward",
        "L4": "L4-difficulty",
        "next": None,
        "adaptive": None,  # no layer of this synthetic spec declares it
    }
    on_disk = json.loads((combined / "bandit" / "findings.json").read_text())
    assert [{k: v for k, v in f.items() if k not in ("source", "llm_layer")} for f in bandit] == on_disk
    analysis = json.loads((combined / "analysis.json").read_text())
    assert analysis["bandit"]["dir"] == "bandit" and analysis["bandit"]["scale"] == TINY.__dict__


def test_report_cli_with_bandit_dir(combined, tmp_path, capsys):
    before = (combined / "report.html").read_text()
    assert main(["report", str(combined), "--bandit", str(combined / "bandit")]) == 0
    assert (combined / "report.html").read_text() == before  # same as the auto-detected one
    assert main(["report", str(combined), "--bandit", str(tmp_path)]) == 2
    assert "not a finished bandit pipeline directory" in capsys.readouterr().err


def test_bandit_own_report_shares_the_look(combined):
    page = (combined / "bandit" / "report.html").read_text()
    main_page = (combined / "report.html").read_text()
    style = re.search(r"<style>(.*?)</style>", main_page, re.S).group(1)
    assert style in page
    # one figure per bandit layer (L0-L4, next, adaptive)
    assert page.count("data:image/png;base64,") == len(list((combined / "bandit").glob("*.png"))) == len(FIGURES)


def test_pipeline_cli_bandit_flags(tmp_path, capsys):
    import yaml

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    assert main(["pipeline", str(spec), "--out", str(tmp_path / "p"), "--dry-run", "--bandit-quick"]) == 0
    assert "then the bandit counterparts (quick)" in capsys.readouterr().err
    assert main(["pipeline", str(spec), "--out", str(tmp_path / "p"), "--dry-run", "--bandit"]) == 0
    assert "then the bandit counterparts (full)" in capsys.readouterr().err


def test_spec_layers_declare_their_counterpart(tmp_path):
    """A layer's `bandit:` key names its counterpart (names need not say it); a spec declaring none
    (older pipeline directories) is matched by the layer names' words."""
    declared = {
        **SPEC,
        "layers": [{**SPEC["layers"][0], "name": "first-layer", "bandit": "L2"}, SPEC["layers"][1]],
    }
    for spec, expected in (
        (declared, {"first-layer": "L2"}),
        (SPEC, dict(zip(NAMES[:5], TINY_IDS, strict=True))),
    ):
        saved = spec_to_dict(spec_from_dict(spec))
        assert spec_from_dict(saved) == spec_from_dict(spec)  # the key survives pipeline.json
        (tmp_path / "pipeline.json").write_text(json.dumps({"spec": saved, "options": {}, "entries": []}))
        assert bandit_counterparts(tmp_path) == expected
