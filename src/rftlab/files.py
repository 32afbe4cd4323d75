"""Names of the files rftlab writes, and the one atomic write: a leaf that writers and readers share.

A reader imports the name from here rather than from the module that writes the file, so reading a
pipeline directory never imports the sweep that made it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PIPELINE_FILE = "pipeline.json"  # a sweep's plan and run statuses (rftlab.pipeline.sweep)
FINDINGS_FILE = "findings.json"  # verdicts on the paper's findings (pipeline report and bandit lab)
ANALYSIS_FILE = "analysis.json"  # every number in a pipeline report
REPORT_FILE = "report.html"
BANDIT_MANIFEST = "bandit.json"  # written last by the bandit lab: its directory holds a finished run
BANDIT_DIR = "bandit"  # a sweep's bandit counterparts, inside the pipeline directory


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | Path, text: str, *, durable: bool = False) -> None:
    """Write `text` to `path` so a reader sees the old file or the new one, never half of one.

    The temporary name carries this process's id: two processes writing one file (two sweeps on one
    directory) never share a temporary. `durable`: fsync the file and its directory (run files that
    a resumed run trusts).
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def cache_dir() -> Path:
    """Where derived artifacts live (converted models, difficulty estimates)."""
    return Path(os.environ.get("RFTLAB_CACHE", Path.home() / ".cache" / "rftlab"))
