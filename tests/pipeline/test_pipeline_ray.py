"""The Ray executor on a local 2-CPU Ray: resumable, and the same metrics as the local executor."""

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from synthetic_runs import synthetic_train  # noqa: E402

from rftlab.pipeline.executors import RunTask, execute  # noqa: E402
from rftlab.policy import BUILTIN_DIR  # noqa: E402

TIMING = ("time/", "wall_seconds", "seconds_per_round")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(TIMING)}


def _metrics(run_dir: Path) -> list[dict]:
    return [_strip(json.loads(line)) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_ray_executor_is_resumable(local_ray, tmp_path):
    from rftlab.config import load_config

    tasks = [RunTask(f"r{s}", str(tmp_path / f"r{s}"), load_config("tiny", {"seed": s}).to_dict()) for s in range(3)]
    results = execute(tasks, executor="ray", train_fn=synthetic_train, progress=False)
    assert [r.status for r in results] == ["done"] * 3
    again = execute(tasks, executor="ray", train_fn=synthetic_train, progress=False)
    assert [r.status for r in again] == ["skipped"] * 3


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """The built-in tiny when it is built; else a freshly built `smoke` profile (seconds)."""
    if (BUILTIN_DIR / "tiny" / "config.json").is_file():
        return "tiny"
    from rftlab.builtin import build_tiny

    out = tmp_path_factory.mktemp("smoke") / "model"
    build_tiny.build(out, "smoke", progress=False)
    return str(out)


@pytest.mark.slow
def test_ray_and_local_give_the_same_metrics_on_tiny(local_ray, small_model, tmp_path):
    from rftlab.commands.pipeline import run_pipeline

    spec = {
        "name": "ray-vs-local",
        "base": "tiny",
        "seeds": 2,
        "overrides": {
            "model.name": small_model,
            "data.difficulty": "any",
            "train.rounds": 3,
            "eval.every": 0,
            "data.test_size": 8,
            "eval.train_samples": 4,
            "rollout.rollouts_per_round": 2,
            "run.progress": False,
        },
        "layers": [{"name": "L1", "finding": "f", "variants": {"none": {}, "grpo": {"objective.advantage": "grpo"}}}],
    }
    run_pipeline(spec, tmp_path / "local", executor="local", workers=2, progress=False)
    run_pipeline(spec, tmp_path / "ray", executor="ray", progress=False)
    local_runs = sorted(p.name for p in (tmp_path / "local" / "runs").iterdir())
    assert len(local_runs) == 4
    for name in local_runs:
        a, b = tmp_path / "local" / "runs" / name, tmp_path / "ray" / "runs" / name
        assert (a / "summary.json").is_file() and (b / "summary.json").is_file()
        assert _metrics(a) == _metrics(b), name
    fa = json.loads((tmp_path / "local" / "analysis.json").read_text())
    fb = json.loads((tmp_path / "ray" / "analysis.json").read_text())
    assert fa["layers"] == fb["layers"]
