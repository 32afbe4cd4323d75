"""Metrics where users look: every metrics.jsonl row also goes to TensorBoard, W&B or MLflow.

`run.report_to` names the backends (none by default; a list is fine). Each is an optional extra,
imported only when named, so a plain run never imports one:

    tensorboard  event files in <dir>/tensorboard[/<group>/<name>]   pip install 'rftlab[tensorboard]'
    wandb        offline mode, <dir>/wandb/offline-run-*/ (`wandb sync` uploads it later)   'rftlab[wandb]'
    mlflow       a local file store, file:<dir>/mlruns               pip install 'rftlab[mlflow]'

<dir> is `run.tracking_dir`: the run directory by default; a relative path is relative to the run
directory, so a sweep's `../../tracking` puts all its runs in one folder (one TensorBoard log dir, one
MLflow store). The interface is three calls: `open_tracker(cfg, run_dir, resume=...)`, `log(row)` (a
metrics.jsonl row; step = its round) and `close()`; the trainer hands `log` to `RunDir.on_metrics`, so
every row written to metrics.jsonl, whichever code writes it, goes out as written.

What goes there: the numeric values of each row under the same keys (`round` is the step; strings,
lists and missing values are left out; a key a round's train row already sent, `rollouts_total`, is
not sent again by its eval row), and the resolved config at the start (TensorBoard hparams and a text
summary, wandb config, MLflow params). A sweep labels each run (`run.tracking_group` = layer/variant,
`run.tracking_tags` = layer, variant, seed; `sweep_labels`).

Resume without duplicates: <run>/tracking.json keeps each backend's run id (wandb id, MLflow run id)
and the position of the last row it was sent (round, index within the round). A resumed run reopens
the same backend runs and sends only rows past that position: the rounds it recomputes after the
checkpoint were sent before the kill, with the values it recomputes (a resume repeats the run). A
backend named only on resume gets the history from metrics.jsonl first.

MLflow 3.7+ keeps its file store in maintenance mode and refuses it unless MLFLOW_ALLOW_FILE_STORE is
set; rftlab sets it (when unset) for the store it opens. `mlflow migrate-filestore` moves a store to
SQLite.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

from rftlab.config import Config
from rftlab.errors import ConfigError
from rftlab.files import write_atomic

STATE_FILE = "tracking.json"
MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # backend -> what it imports
EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # backend -> pyproject extra


def check_installed(cfg: Config) -> None:
    """A one-line ConfigError for a named backend whose package is missing (before any model loads)."""
    for name in cfg.run.report_backends:
        if importlib.util.find_spec(MODULES[name]) is None:
            raise ConfigError(_missing(name))


def _missing(name: str) -> str:
    return (
        f"run.report_to={name} needs the {MODULES[name]} package, which is not installed: "
        f"pip install 'rftlab[{EXTRAS[name]}]'"
    )


def _import(name: str, module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(_missing(name)) from None


def flat_config(cfg: Config) -> dict[str, Any]:
    """{"optim.lr": 1e-05, ...}: the resolved config as dotted keys (lists and None as text)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, data: dict) -> None:
        for key, value in data.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                out[f"{prefix}{key}"] = value if isinstance(value, bool | int | float | str) else json.dumps(value)

    walk("", cfg.to_dict())
    return out


def tags_of(cfg: Config) -> dict[str, str]:
    """run.tracking_tags as a mapping; a repeated key keeps every value, joined with ', '."""
    tags: dict[str, str] = {}
    for tag in cfg.run.tracking_tags:
        key, value = tag.split("=", 1)
        tags[key] = f"{tags[key]}, {value}" if key in tags else value
    return tags


def numeric_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The row's finite numbers, `round` (the step) left out."""
    out = {}
    for key, value in row.items():
        if key == "round" or isinstance(value, str | list | dict) or value is None:
            continue
        value = float(value)
        if math.isfinite(value):
            out[key] = value
    return out


# ----------------------------------------------------------------------------- backends


class TensorBoard:
    """Scalars in an event file (flushed every row, so a kill loses nothing that tracking.json says was sent)."""

    def __init__(self, cfg: Config, base: Path, name: str, fresh: bool, state: dict):
        _import("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        folder = base / "tensorboard"
        if cfg.run.tracking_dir:  # a shared folder: one sub-folder per run
            folder = folder / cfg.run.tracking_group / name if cfg.run.tracking_group else folder / name
        # a fresh start over a directory reused from a run killed before its first round: TensorBoard
        # drops that run's events (step >= 0) at this restart marker
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=0 if fresh else None)
        if fresh:
            for summary in hparams(flat_config(cfg), {}):
                self.writer._get_file_writer().add_summary(summary)
            tags = "".join(f"- {k}: {v}\n" for k, v in tags_of(cfg).items())
            self.writer.add_text("config", f"```\n{cfg.to_yaml()}```\n\n{tags}", 0)
            self.writer.flush()

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self, failed: bool) -> None:
        self.writer.close()


class WandB:
    """An offline W&B run (no network, no account); the run id in tracking.json makes a resume continue it."""

    def __init__(self, cfg: Config, base: Path, name: str, fresh: bool, state: dict):
        wandb = _import("wandb", "wandb")
        state.setdefault("id", uuid.uuid4().hex[:12])
        tags = tags_of(cfg)
        base.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            mode="offline",
            dir=str(base),
            project=cfg.run.tracking_project,
            id=state["id"],
            resume="allow",
            name=name,
            group=cfg.run.tracking_group or None,
            job_type=tags.get("layer"),
            tags=[f"{k}={v}"[:64] for k, v in tags.items()],
            config=cfg.to_dict(),
            reinit="create_new",  # an inline sweep opens one run after another in one process
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True, disable_git=True),
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class MLflow:
    """A run in a local MLflow file store; experiment = run.tracking_project, tags = run.tracking_tags."""

    def __init__(self, cfg: Config, base: Path, name: str, fresh: bool, state: dict):
        _import("mlflow", "mlflow")
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7 refuses a file store otherwise
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self.Metric = Metric
        self.client = MlflowClient(tracking_uri=(base / "mlruns").resolve().as_uri())
        if fresh or "run_id" not in state:
            experiment = self._experiment(cfg.run.tracking_project)
            tags = {**tags_of(cfg), "rftlab.group": cfg.run.tracking_group} if cfg.run.tracking_group else tags_of(cfg)
            run = self.client.create_run(experiment, run_name=name, tags=tags)
            state["run_id"] = run.info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in flat_config(cfg).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(state["run_id"], params=params[i : i + 100])
        else:
            self.client.update_run(state["run_id"], status="RUNNING")
        self.run_id = state["run_id"]

    def _experiment(self, project: str) -> str:
        found = self.client.get_experiment_by_name(project)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(project)
        except Exception:  # another sweep worker created it meanwhile
            found = self.client.get_experiment_by_name(project)
            if found is None:
                raise
            return found.experiment_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.Metric(k, v, now, step) for k, v in metrics.items()])

    def close(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


BACKENDS = {"tensorboard": TensorBoard, "wandb": WandB, "mlflow": MLflow}


# ----------------------------------------------------------------------------- the tracker


class Tracker:
    """Sends metrics rows to the named backends, each row once per backend across resumes."""

    def __init__(self, run_dir: Path, backends: dict[str, Any], state: dict):
        self.run_dir = run_dir
        self.backends = backends
        self.state = state  # backend -> {"sent": [round, index], "keys": [...], and its run id}
        self._round, self._index = None, 0
        self.closed = False

    def log(self, row: dict[str, Any]) -> None:
        """Send one metrics.jsonl row (in the order rows are written) to every backend that lacks it."""
        round_ = int(row["round"])
        self._index = self._index + 1 if round_ == self._round else 0
        self._round = round_
        if not self.backends:
            return
        position = [round_, self._index]
        metrics = numeric_metrics(row)
        for name, backend in self.backends.items():
            state = self.state[name]
            if state.get("sent") is not None and position <= state["sent"]:
                continue  # sent before a kill: the resumed run recomputed the same row
            same_step = state.get("sent") is not None and state["sent"][0] == round_
            already = set(state.get("keys", [])) if same_step else set()
            new = {k: v for k, v in metrics.items() if k not in already}
            if new:
                backend.log(new, round_)
            state["sent"] = position
            state["keys"] = sorted(already | set(metrics))
        self._save()

    def log_rows(self, rows: list[dict[str, Any]]) -> None:
        """The rows metrics.jsonl already holds (round 0's evaluation, or a resumed run's history)."""
        for row in rows:
            self.log(row)

    def close(self, *, failed: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for backend in self.backends.values():
            try:
                backend.close(failed)
            except Exception:
                if not failed:
                    raise
                # closing after a failure, maybe at exit: a backend whose own exit hook already ran
                # (wandb's service is gone) must not keep the others from being marked failed
        if self in _OPEN:
            _OPEN.remove(self)

    def _save(self) -> None:
        write_atomic(self.run_dir / STATE_FILE, json.dumps(self.state) + "\n")


_OPEN: list[Tracker] = []


@atexit.register
def _close_open_trackers() -> None:
    """A run that raised leaves its tracker open: mark its backend runs failed at exit."""
    for tracker in list(_OPEN):
        tracker.close(failed=True)


def tracking_base(cfg: Config, run_dir: str | Path) -> Path:
    """Where the backends write: the run directory, or run.tracking_dir (relative to the run directory)."""
    run_dir = Path(run_dir)
    if not cfg.run.tracking_dir:
        return run_dir
    return run_dir / Path(cfg.run.tracking_dir).expanduser()


def open_tracker(cfg: Config, run_dir: str | Path, *, resume: bool) -> Tracker:
    """The run's tracker: no backend (and nothing imported) with run.report_to=none.

    `resume`: continue the backend runs recorded in <run>/tracking.json; otherwise start new ones.
    """
    for tracker in list(_OPEN):  # left open by a run that raised in this process (an inline sweep)
        tracker.close(failed=True)
    run_dir = Path(run_dir)
    names = cfg.run.report_backends
    if not names:
        return Tracker(run_dir, {}, {})
    check_installed(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(run_dir) if resume else {}
    base = tracking_base(cfg, run_dir).resolve()
    name = cfg.run.tracking_name or run_dir.resolve().name
    backends = {}
    for backend in names:
        fresh = backend not in state
        state.setdefault(backend, {})
        backends[backend] = BACKENDS[backend](cfg, base, name, fresh, state[backend])
    tracker = Tracker(run_dir, backends, state)
    tracker._save()
    _OPEN.append(tracker)
    return tracker


def _read_state(run_dir: Path) -> dict:
    try:
        state = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


# ----------------------------------------------------------------------------- sweeps


def sweep_labels(config: dict, memberships: list[tuple[str, str]], seed: int, pipeline: str) -> dict:
    """A sweep run's config (plain data) with its grouping: layer/variant group, layer, variant and seed
    tags, project = the pipeline's name, and one tracking folder for the whole sweep (<out>/tracking).

    A run shared by several (layer, variant) pairs (identical configs run once) is grouped under the
    first and tagged `also=<layer>/<variant>` for the others. Fields the user set are kept.
    """
    run = dict(config["run"])
    layer, variant = memberships[0]
    run["tracking_dir"] = run.get("tracking_dir") or "../../tracking"
    if run.get("tracking_project", "rftlab") == "rftlab":
        run["tracking_project"] = pipeline
    run["tracking_group"] = run.get("tracking_group") or f"{layer}/{variant}"
    also = [f"also={other_layer}/{other_variant}" for other_layer, other_variant in memberships[1:]]
    run["tracking_tags"] = [
        *run.get("tracking_tags", []),
        f"layer={layer}",
        f"variant={variant}",
        f"seed={seed}",
        *also,
    ]
    return {**config, "run": run}
