"""run.report_to: the real TensorBoard, W&B (offline) and MLflow (file store) write into a temp dir, and
what they wrote is read back and compared with metrics.jsonl.

Readers: TensorBoard's EventAccumulator; W&B's offline .wandb file (the record log, parsed below with
wandb's own protobuf messages); MLflow's MlflowClient on the file store. A backend whose package is
missing skips its tests (they are in the `dev` extra, so CI has all three).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from killed_runs import train_killed_in_update

from rftlab import tracking, trainer
from rftlab.config import load_config
from rftlab.errors import ConfigError
from rftlab.runs import read_jsonl

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")
pytest.importorskip("mlflow")

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # the readers below open the store rftlab wrote

FAST = [
    "train.rounds=3",
    "eval.every=2",
    "eval.train_samples=4",
    "data.test_size=6",
    "data.difficulty=any",
    "run.checkpoint_every=2",
    "run.progress=false",
    "rollout.max_new_tokens=96",
]
ALL = "run.report_to=[tensorboard,wandb,mlflow]"


# ----------------------------------------------------------------------------- readers


def expected(metrics_path: Path, skip=lambda key: False) -> dict[tuple[str, int], float]:
    """(key, round) -> value for every number metrics.jsonl holds (what each backend must hold)."""
    out = {}
    for row in read_jsonl(metrics_path):
        for key, value in tracking.numeric_metrics(row).items():
            if not skip(key):
                out.setdefault((key, row["round"]), value)  # rollouts_total: the train row's, the same number
    return out


def tensorboard_scalars(folder: Path) -> tuple[list[tuple[str, int, float]], object]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return [(tag, e.step, e.value) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)], acc


def wandb_file_records(path: Path) -> list:
    """Every record of one offline run file, in order.

    The .wandb file is a LevelDB-style log: a 7-byte file header (":W&B", magic, version), then 32 KiB
    blocks of records, each a 7-byte header (crc32, length, type: full / first / middle / last) and a
    chunk of a serialized `wandb_internal_pb2.Record`; a block's tail shorter than a header is padding.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, offset, pending, records = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B", path
    while offset + 7 <= len(data):
        if block - offset % block < 7:
            offset += block - offset % block
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        if length == 0 and kind == 0:
            break
        pending += data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # a whole record, or its last chunk
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_records(folder: Path) -> list:
    """The records of every offline run file under folder/wandb, oldest first (a resume adds one)."""
    return [r for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")) for r in wandb_file_records(path)]


def wandb_history(records) -> list[tuple[str, int, float]]:
    out = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            step = r.history.step.num
            for item in r.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    out.append((key, step, json.loads(item.value_json)))
    return out


def wandb_run_record(records):
    return next(r.run for r in records if r.WhichOneof("record_type") == "run")


def mlflow_client(uri_dir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=(uri_dir / "mlruns").resolve().as_uri())


def mlflow_values(client, run_id: str) -> list[tuple[str, int, float]]:
    keys = client.get_run(run_id).data.metrics.keys()
    return [(k, m.step, m.value) for k in keys for m in client.get_metric_history(run_id, k)]


def assert_same(values: list[tuple[str, int, float]], want: dict[tuple[str, int], float], rel: float = 0.0):
    """Each (key, round) exactly once, with metrics.jsonl's value (TensorBoard stores float32: rel 1e-6)."""
    got: dict[tuple[str, int], float] = {}
    for key, step, value in values:
        assert (key, step) not in got, f"{key} at round {step} sent twice"
        got[(key, step)] = value
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=rel, abs=0.0), k


# ----------------------------------------------------------------------------- one run, three backends


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracked") / "run"
    trainer.train(load_config("tiny", FAST + [ALL]), out)
    return out


def test_tensorboard_holds_every_metrics_value_and_the_config(tracked_run):
    scalars, acc = tensorboard_scalars(tracked_run / "tensorboard")
    assert_same(scalars, expected(tracked_run / "metrics.jsonl"), rel=1e-6)
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["model.name"].string_value == "tiny"
    assert hparams["train.rounds"].number_value == 3
    assert hparams["run.report_to"].string_value == json.dumps(["tensorboard", "wandb", "mlflow"])


def test_wandb_offline_run_holds_every_metrics_value_and_the_config(tracked_run):
    records = wandb_records(tracked_run)
    assert_same(wandb_history(records), expected(tracked_run / "metrics.jsonl"))
    run = wandb_run_record(records)
    assert run.project == "rftlab" and run.display_name == "run"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["model"]["name"] == "tiny" and config["train"]["rounds"] == 3
    assert json.loads((tracked_run / "tracking.json").read_text())["wandb"]["id"] == run.run_id


def test_mlflow_file_store_holds_every_metrics_value_and_the_config(tracked_run):
    client = mlflow_client(tracked_run)
    (experiment,) = [e for e in client.search_experiments() if e.name == "rftlab"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert_same(mlflow_values(client, run.info.run_id), expected(tracked_run / "metrics.jsonl"))
    lr = load_config("tiny").optim.lr
    assert run.data.params["optim.lr"] == str(lr) and run.data.params["model.name"] == "tiny"


def test_report_to_none_imports_no_backend(tmp_path):
    """The default run never imports a tracking package (checked in a fresh interpreter)."""
    code = (
        "import sys\n"
        "from rftlab import trainer\n"
        "from rftlab.config import load_config\n"
        f"trainer.train(load_config('tiny', {FAST + ['train.rounds=1']!r}), {str(tmp_path / 'run')!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorboard', 'wandb', 'mlflow', "
        "'tensorboardX') or m == 'torch.utils.tensorboard'))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert not (tmp_path / "run" / tracking.STATE_FILE).exists()


# ----------------------------------------------------------------------------- resume


def test_a_resumed_run_sends_each_row_once_and_a_backend_added_on_resume_gets_the_history(tmp_path):
    """Killed in round 4's update with the checkpoint at round 2: round 3's rows were sent before the kill
    and are recomputed on resume, and must not arrive twice. wandb is named only on resume (a changed
    run.report_to is no reason to refuse a resume): it gets rounds 0-4, history from metrics.jsonl."""
    cfg_killed = load_config("tiny", [*FAST, "train.rounds=4", "run.report_to=[tensorboard,mlflow]"])
    out = tmp_path / "run"
    train_killed_in_update(cfg_killed, out)
    sent = json.loads((out / tracking.STATE_FILE).read_text())
    assert sent["mlflow"]["sent"] == [3, 0]  # round 3's train row went out; the checkpoint is at round 2
    mlflow_run = sent["mlflow"]["run_id"]

    trainer.train(load_config("tiny", [*FAST, "train.rounds=4", ALL]), out, resume=True)

    # time/* of round 3 were sent by the killed process; the resumed one measured its own
    want = expected(out / "metrics.jsonl", skip=lambda k: k.startswith("time/"))
    deterministic = lambda values: [v for v in values if not v[0].startswith("time/")]  # noqa: E731
    assert {r for _, r in want} == {0, 1, 2, 3, 4}
    assert_same(deterministic(tensorboard_scalars(out / "tensorboard")[0]), want, rel=1e-6)
    client = mlflow_client(out)
    (experiment,) = [e for e in client.search_experiments() if e.name == "rftlab"]
    (run,) = client.search_runs([experiment.experiment_id])  # the same MLflow run, continued
    assert run.info.run_id == mlflow_run and run.info.status == "FINISHED"
    assert_same(deterministic(mlflow_values(client, mlflow_run)), want)
    assert_same(deterministic(wandb_history(wandb_records(out))), want)
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["report_to"] == ["tensorboard", "wandb", "mlflow"]


def test_tracker_skips_rows_its_backends_already_have(tmp_path):
    """The resume rule on its own: rows are positioned by (round, index in round); a reopened tracker
    sends only rows past what tracking.json records, and a key a step already has is not sent again."""
    sent = []

    class Recorder:
        def log(self, metrics, step):
            sent.append((step, sorted(metrics)))

        def close(self, failed):
            pass

    rows = [
        {"round": 0, "split": "eval", "rollouts_total": 0, "test/pass_at_1": 0.5},
        {"round": 1, "split": "train_round", "rollouts_total": 1, "loss/policy": 0.1, "example_ids": ["a"]},
        {"round": 1, "split": "eval", "rollouts_total": 1, "test/pass_at_1": 0.6},
        {"round": 2, "split": "train_round", "rollouts_total": 2, "loss/policy": None},
    ]
    state = {"x": {}}
    first = tracking.Tracker(tmp_path, {"x": Recorder()}, state)
    first.log_rows(rows[:2])
    again = tracking.Tracker(tmp_path, {"x": Recorder()}, json.loads((tmp_path / tracking.STATE_FILE).read_text()))
    again.log_rows(rows)
    assert sent == [
        (0, ["rollouts_total", "test/pass_at_1"]),
        (1, ["loss/policy", "rollouts_total"]),
        (1, ["test/pass_at_1"]),  # rollouts_total went with the train row of round 1
        (2, ["rollouts_total"]),  # None is not sent
    ]


def test_a_tracker_left_open_by_a_failed_run_is_marked_failed_when_the_next_opens(tmp_path):
    """An inline sweep goes on after a run raises: the next run's tracker closes the stale one as failed."""
    cfg = load_config("tiny", ["run.report_to=[mlflow, wandb]"])
    stale = tracking.open_tracker(cfg, tmp_path / "a", resume=False)
    stale.log({"round": 0, "split": "eval", "test/pass_at_1": 0.5})
    fresh = tracking.open_tracker(cfg, tmp_path / "b", resume=False)
    fresh.close()
    client = mlflow_client(tmp_path / "a")
    (run,) = client.search_runs([client.get_experiment_by_name("rftlab").experiment_id])
    assert run.info.status == "FAILED" and stale.closed
    assert (
        wandb_run_record(wandb_records(tmp_path / "a")).run_id
        == json.loads((tmp_path / "a" / tracking.STATE_FILE).read_text())["wandb"]["id"]
    )
    exits = [r.exit.exit_code for r in wandb_records(tmp_path / "a") if r.WhichOneof("record_type") == "exit"]
    assert exits == [1]


# ----------------------------------------------------------------------------- sweeps


def fake_train(config: dict, out: str, resume: bool) -> None:
    """The sweep's run function without a model: opens the run's tracker, sends two rows, writes a summary."""
    from synthetic_runs import write_run

    from rftlab.config import config_from_dict

    cfg = config_from_dict(config)
    rows = [
        {"round": 0, "split": "eval", "rollouts_total": 0, "train/pass_at_1": 0.1, "test/pass_at_1": 0.2},
        {"round": 1, "split": "eval", "rollouts_total": 1, "train/pass_at_1": 0.3, "test/pass_at_1": 0.4},
    ]
    write_run(out, config, rows)
    tracker = tracking.open_tracker(cfg, out, resume=resume)
    tracker.log_rows(rows)
    tracker.close()


SPEC = {
    "name": "groups",
    "base": "tiny",
    "seeds": 2,
    "layers": [
        {"name": "L1", "variants": {"none": {"objective.advantage": "none"}, "grpo": {"objective.advantage": "grpo"}}},
        # G1 is L1's `none` (identical configs share one run directory)
        {"name": "L2", "variants": {"G1": {"rollout.rollouts_per_round": 1}, "G2": {"rollout.rollouts_per_round": 2}}},
    ],
}


def test_sweep_runs_carry_their_layer_variant_and_seed(tmp_path):
    from rftlab.pipeline.sweep import run_sweep

    out = tmp_path / "sweep"
    plain = run_sweep(SPEC, tmp_path / "plain", executor="inline", train_fn=fake_train, dry_run=True, progress=False)
    outcome = run_sweep(
        SPEC,
        out,
        executor="inline",
        train_fn=fake_train,
        progress=False,
        check_models=False,
        report_to=["tensorboard", "wandb", "mlflow"],
    )
    assert outcome["done"] == outcome["runs"] == plain["runs"] == 6
    names = sorted(p.name for p in (out / "runs").iterdir())
    shared = next(n for n in names if n.startswith("L1__none__") and n.endswith("seed1"))
    assert not any(n.startswith("L2__G1") for n in names)  # --report-to did not rename or split runs

    client = mlflow_client(out / "tracking")
    (experiment,) = [e for e in client.search_experiments() if e.name == "groups"]
    by_name = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(by_name) == names
    tags = by_name[shared].data.tags
    assert (tags["layer"], tags["variant"], tags["seed"], tags["also"]) == ("L1", "none", "1", "L2/G1")
    g2 = next(n for n in names if n.startswith("L2__G2__") and n.endswith("seed0"))
    assert (by_name[g2].data.tags["layer"], by_name[g2].data.tags["variant"]) == ("L2", "G2")
    assert by_name[g2].data.metrics["test/pass_at_1"] == 0.4

    assert (out / "tracking" / "tensorboard" / "L2" / "G2" / g2).is_dir()
    scalars, _ = tensorboard_scalars(out / "tracking" / "tensorboard" / "L1" / "none" / shared)
    assert sorted((k, s) for k, s, _ in scalars if k == "test/pass_at_1") == [
        ("test/pass_at_1", 0),
        ("test/pass_at_1", 1),
    ]

    wandb_runs = {}
    for path in (out / "tracking").glob("wandb/offline-run-*/run-*.wandb"):
        run = wandb_run_record(wandb_file_records(path))
        wandb_runs[run.display_name] = run
    assert sorted(wandb_runs) == names
    run = wandb_runs[shared]
    assert (run.project, run.run_group, run.job_type) == ("groups", "L1/none", "L1")
    assert set(run.tags) == {"layer=L1", "variant=none", "seed=1", "also=L2/G1"}


def test_a_bad_report_to_fails_the_sweep_before_anything_runs(tmp_path):
    from rftlab.pipeline.sweep import run_sweep

    with pytest.raises(ConfigError, match="run.report_to='neptune' is not allowed"):
        run_sweep(SPEC, tmp_path / "sweep", executor="inline", train_fn=fake_train, report_to=["neptune"])
    assert not (tmp_path / "sweep").exists()


def test_pipeline_command_takes_report_to(tmp_path, capsys):
    from rftlab.cli import main

    spec = tmp_path / "groups.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    assert main(["pipeline", str(spec), "--out", str(tmp_path / "p"), "--dry-run", "--report-to", "mlflow"]) == 0
    assert main(["pipeline", str(spec), "--out", str(tmp_path / "p"), "--dry-run", "--report-to", "comet"]) == 2
    assert "run.report_to='comet' is not allowed" in capsys.readouterr().err


# ----------------------------------------------------------------------------- errors and config


@pytest.mark.parametrize("backend", ["tensorboard", "wandb", "mlflow"])
def test_a_missing_backend_package_is_one_line_naming_the_key_and_the_extra(tmp_path, monkeypatch, backend):
    monkeypatch.setitem(sys.modules, tracking.MODULES[backend], None)  # as if not installed
    cfg = load_config("tiny", [*FAST, f"run.report_to={backend}"])
    with pytest.raises(ConfigError) as err:
        trainer.train(cfg, tmp_path / "run")
    message = str(err.value)
    assert "\n" not in message and f"run.report_to={backend}" in message
    assert f"pip install 'rftlab[{backend}]'" in message
    assert not (tmp_path / "run").exists()  # before the run directory (or a model) is made


def test_report_to_takes_a_name_a_list_or_commas_and_refuses_unknown_names():
    assert load_config("tiny").run.report_backends == ()
    assert load_config("tiny", ["run.report_to=wandb"]).run.report_backends == ("wandb",)
    assert load_config("tiny", ["run.report_to=[mlflow, wandb]"]).run.report_backends == ("mlflow", "wandb")
    assert load_config("tiny", ["run.report_to=tensorboard,mlflow"]).run.report_backends == ("tensorboard", "mlflow")
    with pytest.raises(ConfigError, match="run.report_to='comet' is not allowed; choose none or any of"):
        load_config("tiny", ["run.report_to=[wandb, comet]"])
    with pytest.raises(ConfigError, match="run.tracking_tags"):
        load_config("tiny", ["run.tracking_tags=[layer]"])
