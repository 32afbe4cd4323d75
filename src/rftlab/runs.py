"""The run directory: resolved config, metrics, rollouts, checkpoint, summary.

    <run>/config.yaml        the resolved configuration (every default written out)
    <run>/metrics.jsonl      one JSON object per line; `split` is "train_round" or "eval"
    <run>/rollouts.jsonl.gz  every rollout: round, example id, text, reward
    <run>/checkpoint/        trainer.pt (policy weights, optimizer, trainer state: round, RNG, baseline)
                             and manifest.json (sha256 and size of trainer.pt, round, resolved config)
    <run>/checkpoint.old/    the previous complete checkpoint: the fallback when the newest is damaged
    <run>/summary.json       base vs final figures, written at the end
    <run>/.lock              flock held by the process writing the run (`rftlab run` or a sweep worker)

Appends are whole lines written with one `write` call. A checkpoint is written to a temporary
directory, fsynced (file, manifest, directory) and renamed into place, so a run killed at any
moment has a complete checkpoint (the new one or the previous one). On resume, the manifest's
checksum is verified (a damaged checkpoint falls back to the previous one, or stops with one line),
the resumed config must equal the one the checkpoint was made with, and log lines newer than the
checkpoint are dropped (a torn last line or gzip member is repaired; damage anywhere else is an
error), so the resumed run's files end up identical to an uninterrupted run's.

Test-only fault hook: with RFTLAB_TEST_FAULT=<point>@<round> the process kills itself (SIGKILL) at
that point of the run: `checkpoint.data` (trainer.pt written, manifest not yet), `checkpoint.manifest`
(complete in checkpoint.tmp, not yet renamed), `checkpoint.swap` (old checkpoint moved aside, new one
not yet in place), `rollouts.append` (half of the round's gzip member written). RELIABILITY.md lists
the tests that use it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from rftlab.config import Config, config_from_dict, without_tracking
from rftlab.errors import RftlabError
from rftlab.files import fsync_dir, write_atomic

CHECKPOINT = "checkpoint"
CHECKPOINT_OLD = CHECKPOINT + ".old"
MANIFEST = "manifest.json"
LOCK = ".lock"
FAULT_ENV = "RFTLAB_TEST_FAULT"

log = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; None says "not measured"
    return value


def _fault(point: str, round_: Any) -> None:
    """Test-only: die here (SIGKILL, like `kill -9`) when RFTLAB_TEST_FAULT names this point and round."""
    if os.environ.get(FAULT_ENV) == f"{point}@{round_}":
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- locks and --out


@contextlib.contextmanager
def run_lock(out: str | Path, *, wait: bool = False) -> Iterator[bool]:
    """An exclusive flock on <run>/.lock; yields whether this process got it (`wait`: block until then).

    Taken by `rftlab run` (fresh and --resume) and by each sweep worker, so two processes never write
    one run directory; the OS releases it when its holder dies (kill -9 included).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    except ImportError:  # no fcntl (Windows): no locking
        yield True
    finally:
        os.close(fd)


def check_out_dir(out: str | Path) -> None:
    """Create `out` (if needed) and prove it writable, in one line on failure: before data or a model loads.

    Catches --out that is a file, lies under a file, is read-only, or is in /proc or /sys.
    """
    out = Path(out).expanduser()
    absolute = out.absolute()
    for folder in [absolute, *absolute.parents]:
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                where = "is a file" if folder == absolute else f"is under {folder}, which is a file"
                raise RftlabError(f"--out {out} {where}, not a folder; choose another --out")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise RftlabError(
            f"--out {out} cannot hold a run directory: {err.strerror or err} ({err.filename or out})"
        ) from None


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn a failed write (disk full, read-only, file too large) into one line naming the file."""
    try:
        yield
    except OSError as err:
        raise RftlabError(f"could not write {path}: {_why(err)}") from None


def _why(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno is not None:
        return os.strerror(err.errno)
    return str(err).splitlines()[0] if str(err) else type(err).__name__


# ----------------------------------------------------------------------------- the run directory


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config: dict | None = None  # the resolved config, written into each checkpoint's manifest
        self.provenance: dict | None = None  # what wrote the checkpoint (rftlab.provenance), in its manifest
        self.on_metrics: Callable[[dict[str, Any]], None] | None = None  # also gets each row (rftlab.tracking)

    # ---------------------------------------------------------------- files
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def rollouts_path(self) -> Path:
        return self.path / "rollouts.jsonl.gz"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    def checkpoint_folders(self) -> list[Path]:
        """Checkpoint folders that hold a trainer.pt, newest first."""
        folders = (self.checkpoint_path, self.path / CHECKPOINT_OLD)
        return [f for f in folders if (f / "trainer.pt").is_file()]

    def has_completed_round(self) -> bool:
        """Whether anything here is worth keeping: a checkpoint, a summary, or a logged training round.

        A directory without any (a refused run, or one killed before its first round) is reused by a
        fresh run, so correcting a mistake never needs a new --out.
        """
        if self.checkpoint_folders() or (self.path / "summary.json").is_file():
            return True
        return any(r.get("split") == "train_round" for r in read_jsonl(self.metrics_path))

    def prepare(self, cfg: Config, *, resume: bool) -> None:
        """Create the directory (or reuse one without a completed round), or check that a resumed run
        has the configuration of its config.yaml and of its checkpoint."""
        self.config = cfg.to_dict()
        if not self.has_completed_round():
            self.path.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.jsonl", "rollouts.jsonl.gz", "summary.json", "error.txt"):
                (self.path / name).unlink(missing_ok=True)
            _atomic_write(self.config_path, cfg.to_yaml())
            return
        if not resume:
            raise RftlabError(
                f"run directory {self.path} already holds a run; pass --resume to continue it or choose another --out"
            )
        saved = self._saved_config()
        checkpointed = self.checkpoint_config()
        for source, other in ((self.config_path, saved), (self.checkpoint_path / MANIFEST, checkpointed)):
            if other is not None and without_tracking(other) != without_tracking(cfg):  # tracking may change
                diff = _diff(other.to_dict(), cfg.to_dict())
                raise RftlabError(f"--resume with a different config than {source}: {diff}")
        if saved is None:
            if checkpointed is None and self.checkpoint_folders():
                raise RftlabError(
                    f"{self.config_path} is missing and the checkpoint does not record its config: "
                    f"the resumed config cannot be checked; restore config.yaml"
                )
            source = "the checkpoint's config" if checkpointed is not None else "this run's config"
            log.warning("rftlab: %s was missing or damaged; rewritten from %s", self.config_path, source)
            _atomic_write(self.config_path, cfg.to_yaml())
        elif saved != cfg:  # only run.report_to / run.tracking_* changed: config.yaml says where metrics go now
            _atomic_write(self.config_path, cfg.to_yaml())

    def _saved_config(self) -> Config | None:
        """config.yaml as a Config; None when it is missing, or damaged and nothing depends on it but the
        checkpoint, which records the config (or there is no checkpoint: the resume starts over)."""
        if not self.config_path.exists():
            return None
        try:
            data = yaml.safe_load(self.config_path.read_text())
            if not isinstance(data, dict):
                raise RftlabError("not a mapping")
            # rftlab writes every group; a file cut at a line boundary is still valid YAML, and its lost
            # groups would silently take their defaults
            missing = [name for name in Config.__dataclass_fields__ if name not in data]
            if missing:
                raise RftlabError(f"no {missing[0]!r} section, cut short")
            return config_from_dict(data)
        except (yaml.YAMLError, RftlabError, UnicodeDecodeError, TypeError, ValueError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            if self.checkpoint_folders() and self.checkpoint_config() is None:
                raise RftlabError(
                    f"{self.config_path} is damaged ({reason}) and no checkpoint records the config; "
                    f"restore it, or start the run again in a new --out"
                ) from None
            return None

    def checkpoint_config(self) -> Config | None:
        """The config recorded in the newest readable checkpoint manifest (None: none records one)."""
        for folder in self.checkpoint_folders():
            manifest = _read_manifest(folder)
            if manifest and isinstance(manifest.get("config"), dict):
                try:
                    return config_from_dict(manifest["config"])
                except RftlabError:
                    continue
        return None

    def append_metrics(self, row: dict[str, Any]) -> None:
        row = {k: _jsonable(v) for k, v in row.items()}
        with _writing(self.metrics_path), open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.on_metrics is not None:
            self.on_metrics(row)  # the row as written: the same keys and values

    def append_rollouts(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        payload = "".join(json.dumps(r) + "\n" for r in rows)
        if os.environ.get(FAULT_ENV) == f"rollouts.append@{rows[0].get('round')}":
            member = gzip.compress(payload.encode())
            with open(self.rollouts_path, "ab") as f:  # a kill in the middle of this append
                f.write(member[: len(member) // 2])
            _fault("rollouts.append", rows[0].get("round"))
        with _writing(self.rollouts_path), gzip.open(self.rollouts_path, "at") as f:
            f.write(payload)  # each append is a gzip member; readers concatenate

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.metrics_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        _atomic_write(self.path / "summary.json", json.dumps(summary, indent=2) + "\n")

    def truncate_logs(self, last_round: int) -> None:
        """Drop log lines from rounds after the checkpoint (they will be produced again).

        With a checkpoint (last_round >= 0) the logs must be whole up to it: only a torn last line of
        metrics.jsonl (or a torn last gzip member of rollouts.jsonl.gz) may be dropped; a missing
        file, a damaged line elsewhere, or a missing or repeated round is an error naming the file.
        """
        if last_round < 0:
            rows = []
        else:
            rows = [r for r in read_metrics_strict(self.metrics_path) if r.get("round", 0) <= last_round]
            rounds = [r["round"] for r in rows if r.get("split") == "train_round"]
            if rounds != list(range(1, last_round + 1)):
                missing = sorted(set(range(1, last_round + 1)) - set(rounds))
                repeated = sorted({r for r in rounds if rounds.count(r) > 1})
                what = f"no row for round {missing[0]}" if missing else f"round {repeated[0]} twice"
                raise RftlabError(
                    f"{self.metrics_path} has {what} (the checkpoint is at round {last_round}); "
                    f"the run's history is damaged: start it again in a new --out"
                )
        _atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
        if self.rollouts_path.exists():
            kept = [line for line in read_gzip_lines(self.rollouts_path) if json.loads(line)["round"] <= last_round]
            tmp = self.rollouts_path.with_name(self.rollouts_path.name + ".tmp")
            with _writing(tmp):
                with gzip.open(tmp, "wt") as f:
                    f.write("".join(kept))
                _fsync_file(tmp)
                os.replace(tmp, self.rollouts_path)

    # ---------------------------------------------------------------- checkpoint
    def save_checkpoint(self, model_state: dict, optimizer_state: dict, state: dict) -> None:
        """Write {model, optimizer, state} durably and atomically; `model_state` is what the trainer
        trains (all weights, or only a LoRA adapter's).

        trainer.pt and then manifest.json (its sha256, size, round and the resolved config) are written
        and fsynced in checkpoint.tmp, which replaces checkpoint; the replaced one stays as
        checkpoint.old, the fallback if the newest is ever found damaged. A failed write (disk full)
        removes checkpoint.tmp and stops in one line; the previous checkpoint is untouched.
        """
        tmp = self.path / (CHECKPOINT + ".tmp")
        old = self.path / CHECKPOINT_OLD
        round_ = state.get("round")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            digest, size = _save_hashed(
                {"model": model_state, "optimizer": optimizer_state, "state": state}, tmp / "trainer.pt"
            )
            _fault("checkpoint.data", round_)
            manifest = {"file": "trainer.pt", "sha256": digest, "bytes": size, "round": round_, "config": self.config}
            if self.provenance is not None:
                manifest["provenance"] = self.provenance
            # the manifest last, fsynced with the folder: the folder is complete before it is swapped in
            write_atomic(tmp / MANIFEST, json.dumps(manifest, indent=1) + "\n", durable=True)
        except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
            shutil.rmtree(tmp, ignore_errors=True)
            raise RftlabError(
                f"could not write checkpoint {tmp / 'trainer.pt'}: {_why(err)}; "
                f"the previous checkpoint is kept (free space, then --resume)"
            ) from None
        _fault("checkpoint.manifest", round_)
        if self.checkpoint_path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.checkpoint_path, old)
            _fault("checkpoint.swap", round_)
        os.replace(tmp, self.checkpoint_path)
        fsync_dir(self.path)

    def load_checkpoint(self) -> dict | None:
        """The newest checkpoint whose manifest checksum matches, else the previous one; None if there is
        no checkpoint. A damaged checkpoint with no intact one before it stops with one line."""
        damaged: list[str] = []
        for folder in self.checkpoint_folders():
            problem = _verify(folder)
            if problem is None:
                try:
                    checkpoint = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=False)
                    round_ = checkpoint["state"]["round"]
                except Exception as err:  # a legacy (unverified) file that is damaged
                    problem = f"{folder / 'trainer.pt'} cannot be read ({type(err).__name__}: {_why(err)})"
                else:
                    if damaged:
                        log.warning(
                            "rftlab: %s; resuming from the previous checkpoint %s (round %s)",
                            damaged[0],
                            folder,
                            round_,
                        )
                    return checkpoint
            damaged.append(problem)
        if damaged:
            raise RftlabError(
                f"{damaged[0]}, and there is no earlier intact checkpoint; start the run again in a new "
                f"--out (or delete {self.path} first)"
            )
        return None


def _verify(folder: Path) -> str | None:
    """None if folder/trainer.pt matches its manifest (or has none: written by an older rftlab)."""
    file = folder / "trainer.pt"
    if not (folder / MANIFEST).exists():
        log.warning("rftlab: %s has no %s (an older rftlab wrote it); it cannot be verified", file, MANIFEST)
        return None
    manifest = _read_manifest(folder)
    if manifest is None:
        return f"{folder / MANIFEST} is damaged"
    size = file.stat().st_size
    if size != manifest.get("bytes"):
        return f"{file} is damaged ({size} bytes, its manifest says {manifest.get('bytes')})"
    if _sha256(file) != manifest.get("sha256"):
        return f"{file} is damaged (its sha256 does not match {MANIFEST})"
    return None


def _read_manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class _HashingWriter:
    """A file wrapper for torch.save that hashes the bytes as they are written (no second read), writes
    them whole, and keeps the OSError of a failed write (torch reports it only as a RuntimeError)."""

    def __init__(self, f):
        self.f, self.sha, self.size, self.error = f, hashlib.sha256(), 0, None

    def write(self, data) -> int:
        view = memoryview(data)
        try:
            while view:
                view = view[self.f.write(view) :]
        except OSError as err:
            self.error = err
            raise
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.f.flush()


def _save_hashed(obj: Any, path: Path) -> tuple[str, int]:
    with open(path, "wb", buffering=0) as f:
        writer = _HashingWriter(f)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise
        os.fsync(f.fileno())
    return writer.sha.hexdigest(), writer.size


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# metrics.jsonl keys that had no namespace before issue 10 (old name -> new name). Readers map them, so an
# older run directory summarizes, analyses and compares exactly as one written today.
RENAMED_METRICS = {
    "entropy": "policy/entropy",
    "grad_norm": "optim/grad_norm",
    "lr": "optim/lr",
    "tokens": "tokens/round",
    "tokens_total": "tokens/total",
}


def current_metric_names(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics.jsonl row with any old metric name replaced by its namespaced one (order kept)."""
    return {RENAMED_METRICS.get(k, k): v for k, v in row.items()}


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl file, leniently, in today's metric names (an older run's rows are mapped)."""
    return [current_metric_names(row) for row in read_jsonl(path) if isinstance(row, dict)]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file, leniently (reports and figures); a damaged line is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def read_metrics_strict(path: str | Path) -> list[dict[str, Any]]:
    """Rows of metrics.jsonl for a resume: only a torn last line (no newline: a kill mid-write) is
    dropped; a missing file or a damaged line elsewhere is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise RftlabError(
            f"{path} is missing but the run has a checkpoint: the run's history is lost; start it again in a new --out"
        )
    lines = path.read_bytes().split(b"\n")  # the last item is b"" or a torn line (no newline after it)
    rows = []
    for number, line in enumerate(lines[:-1], 1):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            raise RftlabError(
                f"{path} line {number} is damaged (not a JSON object); only a torn last line can be "
                f"repaired: fix or remove that line, or start the run again in a new --out"
            ) from None
        rows.append(row)
    if lines[-1].strip():
        log.warning("rftlab: dropping a torn last line of %s (line %d)", path, len(lines))
    return rows


def read_gzip_lines(path: str | Path) -> list[str]:
    """Complete lines of a gzip file of concatenated members; a torn tail (a kill in the middle of an
    append) is dropped. A damaged line before the tail is an error naming the file."""
    path = Path(path)
    data = path.read_bytes()
    text, pos, torn = bytearray(), 0, False
    while pos < len(data):
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            text += member.decompress(data[pos:])
        except zlib.error:
            torn = True
            break
        if not member.eof:
            torn = True
            break
        pos = len(data) - len(member.unused_data)
    lines = bytes(text).split(b"\n")
    if lines[-1]:
        torn = True
    out = []
    for number, line in enumerate(lines[:-1], 1):
        try:
            if not isinstance(json.loads(line), dict):
                raise ValueError
        except ValueError:
            raise RftlabError(f"{path} line {number} is damaged (not a JSON object)") from None
        out.append(line.decode() + "\n")
    if torn:
        log.warning("rftlab: dropping the torn end of %s after line %d", path, len(out))
    return out


def _atomic_write(path: Path, text: str) -> None:
    with _writing(path):
        write_atomic(path, text, durable=True)


def _diff(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            found = _diff(a[key], b[key], f"{prefix}{key}.")
            if found:
                return found
        elif a.get(key) != b.get(key):
            return f"{prefix}{key} was {a.get(key)!r}, now {b.get(key)!r}"
    return ""
