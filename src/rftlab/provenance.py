"""What produced a result: library versions, the rftlab source's git commit, the machine, the command, the time.

A leaf (it imports no other rftlab module): the trainer writes `collect()` into summary.json and the
checkpoint manifest, `rftlab export` into the exported folder's rftlab.json. Runs compared weeks apart
can then say which code, libraries and machine made each of them.

- `git` is the commit of the checkout rftlab was imported from, with `dirty` when tracked files
  differ from it; None when rftlab was installed from a wheel (no checkout holds the imported file,
  even if a virtual environment sits inside some git repository) or git is not installed.
- Times are UTC, ISO 8601 to the second.
"""

from __future__ import annotations

import functools
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import rftlab

# distribution names whose versions every record carries (python is recorded separately)
LIBRARIES = ("rftlab", "torch", "transformers", "peft", "math-verify", "numpy", "safetensors", "huggingface-hub")
GIT_TIMEOUT_S = 5.0


def now() -> str:
    """The current UTC time, ISO 8601 to the second (`2026-11-30T13:05:09Z`)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def library_versions() -> dict[str, str | None]:
    """Installed version of each of LIBRARIES (None: not installed); torch's as torch reports it."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if "torch" in sys.modules:  # the build tag (+cpu, +cu124) as the running torch states it
        versions["torch"] = sys.modules["torch"].__version__
    return versions


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def git_state(source: str | None = None) -> dict | None:
    """{"commit", "dirty"} of the checkout holding the imported rftlab package, or None (wheel, no git).

    `source`: the package file to look for (default: this rftlab's __init__.py). The file must be
    tracked by the repository found above it: a wheel inside a virtual environment inside some
    checkout is not that checkout's source.
    """
    package_file = Path(source or rftlab.__file__).resolve()
    folder = package_file.parent
    top = _git(["rev-parse", "--show-toplevel"], folder)
    if not top or _git(["ls-files", "--error-unmatch", str(package_file)], folder) is None:
        return None
    commit = _git(["rev-parse", "HEAD"], folder)
    if commit is None:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], folder)
    return {"commit": commit, "dirty": bool(status), "path": top}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_names() -> list[str]:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


@functools.lru_cache(maxsize=1)
def _machine_static() -> dict:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
    }


def machine() -> dict:
    """Platform, host, CPU model, cores (all and usable by this process), GPU names (empty: none)."""
    return {**_machine_static(), "gpus": _gpu_names()}


def collect(*, started_at: str | None = None, ended_at: str | None = None, argv: list[str] | None = None) -> dict:
    """The provenance record: versions, python, git, machine, command line and times (None: not given)."""
    return {
        "versions": library_versions(),
        "python": platform.python_version(),
        "git": git_state(),
        "machine": machine(),
        "command": shlex.join(sys.argv if argv is None else argv),
        "started_at": started_at,
        "ended_at": ended_at,
    }
