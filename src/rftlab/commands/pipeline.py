"""The `pipeline`, `report` and `compare` sub-commands (added to `rftlab` by rftlab.cli).

`rftlab pipeline` composes three library steps, each doing one thing: the sweep
(`rftlab.pipeline.sweep.run_sweep`), then the bandit counterparts (`rftlab.commands.bandit.ensure_counterparts`),
then the report (`rftlab.report.html.build_report`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rftlab.commands.bandit import ensure_counterparts
from rftlab.errors import RftlabError
from rftlab.files import BANDIT_DIR
from rftlab.pipeline.analysis import BOOTSTRAP
from rftlab.pipeline.executors import EXECUTORS
from rftlab.pipeline.sweep import run_sweep
from rftlab.report.compare import compare_runs, default_figure_path, task_differences
from rftlab.report.html import build_report

BANDIT_SCALES = ("quick", "full")


def run_pipeline(
    source, out: str | Path, *, bandit: str | None = None, report: bool = True, progress: bool = True, **sweep_options
) -> dict:
    """The sweep (`run_sweep`, with `sweep_options`), then the bandit counterparts into `<out>/bandit`
    (`bandit`: "quick" or "full"; kept when a finished one of that scale is there), then the report.

    Returns the sweep's outcome. With `dry_run` only the sweep's plan is printed.
    """
    if bandit not in (None, *BANDIT_SCALES):
        raise RftlabError(f"bandit must be 'quick' or 'full', not {bandit!r}")
    out = Path(out)
    outcome = run_sweep(source, out, progress=progress, **sweep_options)
    if bandit:
        print(f"  then the bandit counterparts ({bandit}) -> {out / BANDIT_DIR}", file=sys.stderr)
    if sweep_options.get("dry_run"):
        return outcome
    if bandit and not ensure_counterparts(out / BANDIT_DIR, quick=bandit == "quick", progress=progress):
        print(f"  bandit counterparts: finished before in {out / BANDIT_DIR}", file=sys.stderr)
    if report:
        build_report(out, bandit=out / BANDIT_DIR if bandit else None)
    return outcome


def _pipeline(args: argparse.Namespace) -> int:
    outcome = run_pipeline(
        args.spec,
        args.out,
        seeds=args.seeds,
        executor=args.executor,
        workers=args.workers,
        quick=args.quick,
        layers=args.layers,
        keep_checkpoints=args.keep_checkpoints,
        dry_run=args.dry_run,
        ray_address=args.ray_address,
        report=not args.no_report,
        bandit="quick" if args.bandit_quick else "full" if args.bandit else None,
        report_to=args.report_to,
    )
    if args.dry_run:
        return 0
    held = f", {outcome['held']} held by another sweep" if outcome.get("held") else ""
    print(
        f"{outcome['runs']} runs: {outcome['done']} done, {outcome['failed']} failed{held}, "
        f"{outcome['skipped']} skipped (missing model)"
    )
    if not args.no_report:
        print(f"report: {args.out}/report.html  findings: {args.out}/findings.json")
    if args.quick:
        print("quick mode: a smoke test; its verdicts cannot support a finding (marked smoke only in the report)")
    return 1 if outcome["failed"] else 0


def _report(args: argparse.Namespace) -> int:
    path = build_report(args.dir, n_boot=args.bootstrap, bandit=args.bandit)
    print(f"report: {path}  findings: {path.parent / 'findings.json'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """The table on stdout; the figure to --figure, else into --out, else beside the runs; task mismatches warned."""
    out = Path(args.out) if args.out else None
    figure = args.figure or (out / "compare.png" if out else default_figure_path(args.runs))
    if out:
        out.mkdir(parents=True, exist_ok=True)
    table, path = compare_runs(args.runs, figure)
    warnings = task_differences(args.runs)
    for line in warnings:
        print(line, file=sys.stderr)
    print(table)
    if out:
        (out / "compare.txt").write_text("\n".join([*warnings, table]) + "\n")
        print(f"table: {out / 'compare.txt'}", file=sys.stderr)
    if path:
        print(f"figure: {path}", file=sys.stderr)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "pipeline",
        help="run a layered sweep (variants x seeds) and write its report",
        description="Run every (variant, seed) of a pipeline spec's layers, then write DIR/report.html and "
        "DIR/findings.json. Running it again skips finished runs and resumes unfinished ones.",
    )
    p.add_argument("spec", help="pipeline YAML file or built-in name (paper, paper-gpu)")
    p.add_argument("--out", required=True, help="pipeline directory (run directories go in DIR/runs/)")
    p.add_argument("--seeds", type=int, help="seeds per variant (default: the spec's; seed k uses seed=k)")
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: process pool on this machine (default); ray: one Ray task per run; inline: "
        "sequential in this process",
    )
    p.add_argument(
        "--workers", type=int, help="parallel runs (default: the machine's cores; torch threads = cores / workers)"
    )
    p.add_argument("--quick", action="store_true", help="the spec's quick mode: 2 seeds and few rounds (smoke test)")
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="run only these layers")
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep finished runs' checkpoints (default: deleted once summary.json is written)",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan and a time estimate")
    p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--no-report", action="store_true", help="skip writing the report")
    p.add_argument(
        "--report-to",
        nargs="+",
        metavar="BACKEND",
        help="also send every run's metrics to tensorboard, wandb (offline) and/or mlflow (file store), in "
        "DIR/tracking, grouped by layer/variant/seed (run.report_to; run directories keep their names)",
    )
    p.add_argument(
        "--bandit",
        action="store_true",
        help="after the sweep, run the bandit counterparts of the layers into DIR/bandit (skipped if "
        "a finished one is there); the report shows them next to the LLM layers",
    )
    p.add_argument(
        "--bandit-quick", action="store_true", help="like --bandit, at the bandit pipeline's quick scale (~15 s)"
    )
    p.set_defaults(func=_pipeline)

    r = subparsers.add_parser(
        "report",
        help="rebuild a pipeline's report.html and findings.json",
        description="Analyse a pipeline directory's runs and (re)write DIR/report.html, "
        "DIR/findings.json, DIR/analysis.json and DIR/figures/.",
    )
    r.add_argument("dir", help="pipeline directory (from rftlab pipeline --out)")
    r.add_argument("--bootstrap", type=int, default=BOOTSTRAP, help=f"bootstrap resamples (default {BOOTSTRAP})")
    r.add_argument(
        "--bandit",
        metavar="BANDIT_DIR",
        help="a finished `rftlab bandit pipeline` directory whose figures and findings go next to the "
        "LLM layers (default: DIR/bandit if it is there)",
    )
    r.set_defaults(func=_report)

    c = subparsers.add_parser(
        "compare",
        help="compare run directories: a table and a figure",
        description="Print a table of several run directories (Pass@1 base/final/best, "
        "learning speed, sample efficiency) and draw them in one figure.",
    )
    c.add_argument("runs", nargs="+", help="run directories")
    c.add_argument("--out", help="folder for compare.png and compare.txt (the table and any task warnings)")
    c.add_argument(
        "--figure",
        help="where to save the figure (default: OUT/compare.png, else compare.png in the runs' parent folder)",
    )
    c.set_defaults(func=_compare)
