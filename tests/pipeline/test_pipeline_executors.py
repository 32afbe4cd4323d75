"""Executors: finished runs are skipped, unfinished ones resume, failures are recorded, sweeps resume."""

import json
import time
from pathlib import Path

import pytest
from synthetic_runs import synthetic_train

from rftlab.commands.pipeline import run_pipeline
from rftlab.pipeline import executors, sweep
from rftlab.pipeline.executors import RunTask, execute, run_one

CALLS: list[tuple[str, bool]] = []


def recording_train(config, out, resume):
    CALLS.append((Path(out).name, resume))
    return synthetic_train(config, out, resume)


def crashing_train(config, out, resume):
    """Writes config.yaml (as the trainer does first), then dies mid-run."""
    Path(out, "config.yaml").write_text("seed: 0\n")
    raise RuntimeError("boom at round 3")


def _config(seed=0, rounds=4):
    from rftlab.config import load_config

    return load_config("tiny", {"seed": seed, "train.rounds": rounds, "eval.every": 2}).to_dict()


def _tasks(tmp_path, n=4):
    return [RunTask(f"r{i}", str(tmp_path / f"r{i}"), _config(seed=i)) for i in range(n)]


def test_run_one_starts_resumes_skips_and_records_failures(tmp_path):
    CALLS.clear()
    task = _tasks(tmp_path, 1)[0]
    assert run_one(task, recording_train).status == "done" and CALLS == [("r0", False)]
    assert run_one(task, recording_train).status == "skipped" and len(CALLS) == 1  # summary.json present
    (tmp_path / "r0" / "summary.json").unlink()  # as if killed after config.yaml was written
    res = run_one(task, recording_train)
    assert res.status == "done" and res.resumed and CALLS[-1] == ("r0", True)
    bad = RunTask("bad", str(tmp_path / "bad"), _config())
    res = run_one(bad, crashing_train)
    assert res.status == "failed" and "boom at round 3" in res.error
    assert "RuntimeError" in (tmp_path / "bad" / "error.txt").read_text()
    res = run_one(bad, recording_train)  # the next try resumes it and clears the error
    assert res.status == "done" and res.resumed and not (tmp_path / "bad" / "error.txt").exists()


def test_checkpoint_removed_after_finishing_unless_kept(tmp_path):
    def with_checkpoint(config, out, resume):
        Path(out, "checkpoint").mkdir(parents=True, exist_ok=True)
        Path(out, "checkpoint", "trainer.pt").write_text("x")
        return synthetic_train(config, out, resume)

    a, b = _tasks(tmp_path, 2)
    run_one(a, with_checkpoint, keep_checkpoint=False)
    run_one(b, with_checkpoint, keep_checkpoint=True)
    assert not (Path(a.out) / "checkpoint").exists() and (Path(b.out) / "checkpoint").exists()


def test_a_locked_run_is_left_alone(tmp_path):
    task = _tasks(tmp_path, 1)[0]
    with executors._run_lock(Path(task.out)) as got:
        assert got
        assert run_one(task, recording_train).status == "busy"
    assert run_one(task, recording_train).status == "done"


def test_killed_sweep_reruns_only_unfinished(tmp_path):
    CALLS.clear()
    tasks = _tasks(tmp_path, 4)
    seen = []

    def killed_after_two(config, out, resume):
        if len(seen) == 2:
            Path(out, "config.yaml").write_text("seed: 0\n")  # started, then the sweep is killed
            raise KeyboardInterrupt
        seen.append(out)
        return synthetic_train(config, out, resume)

    with pytest.raises(KeyboardInterrupt):
        execute(tasks, executor="inline", train_fn=killed_after_two, progress=False)
    results = execute(tasks, executor="inline", train_fn=recording_train, progress=False)
    assert [r.status for r in results] == ["skipped", "skipped", "done", "done"]
    assert CALLS == [("r2", True), ("r3", False)]  # r2 resumes, r3 starts, r0/r1 untouched


def test_local_pool_runs_in_worker_processes(tmp_path):
    tasks = _tasks(tmp_path, 3)
    results = execute(tasks, executor="local", workers=2, train_fn=synthetic_train, progress=False)
    assert [r.status for r in results] == ["done"] * 3
    assert all((Path(t.out) / "summary.json").is_file() for t in tasks)
    again = execute(tasks, executor="local", workers=2, train_fn=synthetic_train, progress=False)
    assert [r.status for r in again] == ["skipped"] * 3


def test_gpu_request_follows_the_device():
    assert executors.wants_gpu({"model": {"device": "cuda"}})
    assert executors.wants_gpu({"model": {"device": "cuda:1"}})
    assert not executors.wants_gpu({"model": {"device": "auto"}})
    tasks = sweep._tasks(
        [type("R", (), {"run": "x", "config": {**_config(), "model": {**_config()["model"], "device": "cuda"}}})()],
        Path("/tmp"),
        1,
    )
    assert tasks[0].num_gpus == 1.0


def test_pipeline_resume_gives_the_same_report(tmp_path, monkeypatch):
    spec = {
        "name": "t",
        "base": "tiny",
        "seeds": 3,
        "overrides": {"train.rounds": 6, "eval.every": 2},
        "layers": [
            {
                "name": "L1",
                "finding": "f",
                "variants": {"none": {}, "grpo": {"objective.advantage": "grpo"}},
                "claims": [{"finding": "grpo differs", "metric": "test_final", "rule": "differs", "threshold": 0.01}],
            }
        ],
    }
    spec_file = tmp_path / "spec.yaml"
    import yaml

    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "p"
    count = {"n": 0}

    def dies_on_fourth(config, out_, resume):
        count["n"] += 1
        if count["n"] == 4:
            raise KeyboardInterrupt
        return synthetic_train(config, out_, resume)

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(
            str(spec_file), out, executor="inline", train_fn=dies_on_fourth, check_models=False, progress=False
        )
    CALLS.clear()
    run_pipeline(str(spec_file), out, executor="inline", train_fn=recording_train, check_models=False, progress=False)
    assert len(CALLS) == 3  # 6 runs, 3 finished before the kill
    resumed = json.loads((out / "findings.json").read_text())
    fresh = tmp_path / "fresh"
    run_pipeline(str(spec_file), fresh, executor="inline", train_fn=synthetic_train, check_models=False, progress=False)
    assert json.loads((fresh / "findings.json").read_text()) == resumed
    entries = json.loads((out / "pipeline.json").read_text())["entries"]
    assert len(entries) == 6 and all(e["status"] == "done" for e in entries)


def test_missing_model_is_skipped_with_a_reason(tmp_path, monkeypatch):
    spec = {
        "name": "t",
        "base": "tiny",
        "seeds": 2,
        "overrides": {"train.rounds": 2},
        "layers": [{"name": "L5", "finding": "f", "variants": {"tiny": {}, "other": {"model.name": "tiny-narrow"}}}],
    }
    monkeypatch.setattr(sweep, "model_status", lambda name, **kw: "not built (test)" if name == "tiny-narrow" else None)
    outcome = run_pipeline(spec, tmp_path / "p", executor="inline", train_fn=synthetic_train, progress=False)
    assert outcome["failed"] == 0 and outcome["skipped"] == 2
    entries = json.loads((tmp_path / "p" / "pipeline.json").read_text())["entries"]
    assert {e["status"] for e in entries if e["variant"] == "other"} == {"skipped"}
    html = (tmp_path / "p" / "report.html").read_text()
    assert "not built (test)" in html


def test_model_status_reasons(tmp_path):
    import torch

    if not torch.cuda.is_available():
        assert "no CUDA" in sweep.model_status("x", device="cuda")
        assert sweep.model_status("x", device="cuda", check_cuda=False) is None  # a Ray cluster may have GPUs
    assert "config.json" in sweep.model_status(str(tmp_path))


def test_group_followers_wait_for_their_leader(tmp_path):
    order = []

    def logged(config, out, resume):
        order.append(Path(out).name)
        return synthetic_train(config, out, resume)

    cfg = _config()
    tasks = [
        RunTask("a1", str(tmp_path / "a1"), cfg, group="A"),
        RunTask("a2", str(tmp_path / "a2"), cfg, group="A"),
        RunTask("b1", str(tmp_path / "b1"), cfg, group="B"),
        RunTask("free", str(tmp_path / "free"), cfg),
        RunTask("a3", str(tmp_path / "a3"), cfg, group="A"),
    ]
    ready, waiting = executors.split_groups(tasks)
    assert [t.name for t in ready] == ["a1", "b1", "free"]
    assert [t.name for t in waiting["A"]] == ["a2", "a3"] and "B" not in waiting
    results = execute(tasks, executor="local", workers=2, train_fn=synthetic_train, progress=False)
    assert all(r.status == "done" for r in results)


def test_difficulty_group_keys():
    cfg = _config()
    assert sweep.difficulty_group(cfg).startswith("difficulty:")
    cfg2 = {**cfg, "seed": 7, "objective": {**cfg["objective"], "advantage": "grpo"}}
    assert sweep.difficulty_group(cfg2) == sweep.difficulty_group(cfg)  # same estimate
    anyd = {**cfg, "data": {**cfg["data"], "difficulty": "any"}}
    assert sweep.difficulty_group(anyd) == ""
    # the group is the estimate's cache key: a sampling setting in it splits the group, the pool size does not
    other_top_p = {**cfg, "rollout": {**cfg["rollout"], "top_p": 0.5}}
    assert sweep.difficulty_group(other_top_p) != sweep.difficulty_group(cfg)
    bigger_pool = {**cfg, "data": {**cfg["data"], "difficulty_pool": cfg["data"]["difficulty_pool"] + 1}}
    assert sweep.difficulty_group(bigger_pool) == sweep.difficulty_group(cfg)


# ----------------------------------------------------------------------------- two sweeps, one directory

SWEEP_A = """
import json, sys, time
from pathlib import Path
from rftlab.commands.pipeline import run_pipeline
from rftlab.pipeline import sweep
from synthetic_runs import synthetic_train

spec, out, flags = sys.argv[1], sys.argv[2], Path(sys.argv[3])

def holds_first_run(config, run_out, resume):
    if not (flags / "a_holds").exists():  # keep the first run (and its lock) until sweep B has seen it
        (flags / "a_holds").write_text(run_out)
        while not (flags / "go").exists():
            time.sleep(0.02)
    return synthetic_train(config, run_out, resume)

outcome = run_pipeline(spec, out, executor="inline", train_fn=holds_first_run, check_models=False,
                             progress=False, report=False)
print(json.dumps({k: outcome[k] for k in ("runs", "done", "failed", "held")}))
"""


def _two_run_spec(tmp_path):
    import yaml

    spec = {
        "name": "t",
        "base": "tiny",
        "seeds": 2,
        "overrides": {"train.rounds": 4, "eval.every": 2},
        "layers": [{"name": "L0", "finding": "f", "variants": {"none": {}}}],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_run_held_by_another_process_is_reported_held_not_failed(tmp_path, capsys):
    import threading

    from rftlab.runs import run_lock

    spec = _two_run_spec(tmp_path)
    out = tmp_path / "p"
    name = sweep._tasks(sweep.plan(sweep.load_spec(str(spec), validate=False)), out, 1)[0].name
    result = {}

    def sweep_b():
        result.update(
            run_pipeline(
                str(spec),
                out,
                executor="inline",
                train_fn=synthetic_train,
                check_models=False,
                progress=False,
                report=False,
            )
        )

    with run_lock(out / "runs" / name) as got:  # another process's lock on one run (held, unfinished)
        assert got
        thread = threading.Thread(target=sweep_b)
        thread.start()
        deadline = time.monotonic() + 60
        while '"status": "busy"' not in _read(out / "pipeline.json") and time.monotonic() < deadline:
            time.sleep(0.02)
        entries = json.loads((out / "pipeline.json").read_text())["entries"]
        busy = [e for e in entries if e["run"] == name]
        assert busy and all(e["status"] == "busy" and "held by another sweep" in e["reason"] for e in busy)
        assert thread.is_alive()  # waiting for the holder, not failing
    thread.join(60)  # the lock is free but the run unfinished (its holder died): this sweep finishes it
    assert result["failed"] == 0 and result["done"] == 2 and result["held"] == 0
    entries = json.loads((out / "pipeline.json").read_text())["entries"]
    assert all(e["status"] == "done" for e in entries)
    assert "held by another sweep" in capsys.readouterr().err


def _read(path):
    return path.read_text() if path.exists() else ""


def test_concurrent_sweeps_on_one_directory_both_end_with_every_run_done(tmp_path):
    """Two real sweep processes: A holds a run while B starts; neither reports a failure or `busy`."""
    import subprocess
    import sys

    spec, out, flags = _two_run_spec(tmp_path), tmp_path / "p", tmp_path / "flags"
    flags.mkdir()
    script = tmp_path / "sweep_a.py"
    script.write_text(SWEEP_A)
    a = subprocess.Popen(
        [sys.executable, str(script), str(spec), str(out), str(flags)],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (flags / "a_holds").exists():
            assert a.poll() is None and time.monotonic() < deadline, a.stderr.read() if a.poll() is not None else ""
            time.sleep(0.02)
        held = Path((flags / "a_holds").read_text())

        def b_train(config, run_out, resume):
            (flags / "go").write_text("")  # let A finish its run while B works on the other one
            while not (held / "summary.json").exists():
                time.sleep(0.02)
            return synthetic_train(config, run_out, resume)

        b = run_pipeline(
            str(spec), out, executor="inline", train_fn=b_train, check_models=False, progress=False, report=False
        )
        stdout, stderr = a.communicate(timeout=120)
    finally:
        a.kill()
    assert a.returncode == 0, stderr
    a_outcome = json.loads(stdout.strip().splitlines()[-1])
    for outcome in (a_outcome, b):
        assert (outcome["runs"], outcome["done"], outcome["failed"], outcome["held"]) == (2, 2, 0, 0)
    entries = json.loads((out / "pipeline.json").read_text())["entries"]
    assert len(entries) == 2 and all(e["status"] == "done" for e in entries)


def test_off_a_terminal_the_runs_bar_is_plain_lines(capsys):
    """A sweep logged to a file or CI gets one line per finished run, no carriage returns or escape codes."""
    bar = executors.Progress(total=3, already=1, enabled=True)
    bar.update(executors.RunResult("L0__minimalist__seed0", "done"))
    bar.update(executors.RunResult("L0__minimalist__seed1", "failed"))
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("runs [0:00] 2/3 done: L0__minimalist__seed0")
    assert lines[1].endswith("(failed 1, held 0)")
    silent = executors.Progress(total=1, already=0, enabled=False)
    silent.update(executors.RunResult("x", "done"))
    assert capsys.readouterr().err == ""
