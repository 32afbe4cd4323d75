"""Puts `tests/helpers` on the import path of the tests and of every process they start.

The sweep's workers (spawned processes, Ray workers) unpickle a run function by its module name, so a
test-only stand-in such as `synthetic_runs.synthetic_train` must be importable there too: spawn copies
the parent's `sys.path`, and a Ray worker (or any subprocess) reads `PYTHONPATH`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HELPERS = str(Path(__file__).resolve().parent / "helpers")
if HELPERS not in sys.path:
    sys.path.insert(0, HELPERS)
if HELPERS not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HELPERS, os.environ.get("PYTHONPATH")) if p)
