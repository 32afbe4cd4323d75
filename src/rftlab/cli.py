"""The `rftlab` command line. Every sub-command has --help; a user mistake prints one line, exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from rftlab.errors import RftlabError

MAIN_CONFIG = "tiny"  # the main job: the minimalist configuration on the built-in tiny model


def _run(args: argparse.Namespace) -> int:
    from rftlab.config import load_config
    from rftlab.trainer import train

    overrides = list(args.overrides)
    source = args.config
    if source is not None and "=" in source and not Path(source).exists():
        overrides.insert(0, source)  # `rftlab run seed=3` without a config name
        source = None
    cfg = load_config(source or MAIN_CONFIG, overrides)
    out = Path(args.out) if args.out else Path("runs") / f"{Path(source or MAIN_CONFIG).stem}__seed{cfg.seed}"
    print(f"rftlab run: {cfg.model.name} on {cfg.data.dataset}, {cfg.train.rounds} rounds, seed {cfg.seed} -> {out}",
          file=sys.stderr)  # fmt: skip
    summary = train(cfg, out, resume=args.resume)
    print(format_summary(summary, out))
    return 0


def format_summary(summary: dict, out: Path) -> str:
    b, f = summary["base"], summary["final"]
    reached = summary.get("first_round_train_pass_at_1_ge_0.9")
    lines = [
        f"== rftlab summary: {summary['model']} on {summary['dataset']}, seed {summary['seed']}, "
        f"training example(s) {', '.join(summary['train_example_ids'])}",
        f"   train-example Pass@1  base {b['train_pass_at_1']:.3f}  ->  final {f['train_pass_at_1']:.3f}"
        + (f"   (>= 0.9 first at round {reached})" if reached is not None else "   (never >= 0.9 at an evaluation)"),
        f"   test Pass@1           base {b['test_pass_at_1']:.3f}  ->  final {f['test_pass_at_1']:.3f}"
        f"   (best {summary['best_test']['test_pass_at_1']:.3f} at round {summary['best_test']['round']})",
        f"   {summary['rounds']} rounds, {summary['rollouts_total']} rollouts, {summary['wall_seconds']:.1f} s wall "
        f"({summary['seconds_per_round']:.2f} s/round)",
        f"   run directory: {out}  (summary.json, metrics.jsonl, pass_at_1.png)",
    ]
    return "\n".join(lines)


def _config(args: argparse.Namespace) -> int:
    from rftlab.config import builtin_config_names, describe_fields, load_config

    if args.action == "fields":
        rows = describe_fields()
        width = max(len(r[0]) for r in rows)
        for key, default, allowed, help_ in rows:
            print(f"{key:<{width}}  {default:<12} {allowed:<28} {help_}")
    elif args.action == "list":
        print("\n".join(builtin_config_names()))
    else:
        print(load_config(args.config or MAIN_CONFIG, args.overrides).to_yaml(), end="")
    return 0


def _build_tiny(args: argparse.Namespace) -> int:
    from rftlab.builtin import build_tiny

    return build_tiny.main(args.rest) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rftlab",
        description="Reinforcement fine-tuning of LLMs with verifiable rewards, bottom-up (arXiv 2601.14599).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, and show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train one configuration with one seed",
                         description="Train one configuration with one seed; writes a run directory.")  # fmt: skip
    run.add_argument("config", nargs="?", help=f"YAML file or built-in config name (default: {MAIN_CONFIG})")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. seed=3 objective.advantage=grpo")
    run.add_argument("--out", help="run directory (default: runs/<config>__seed<N>)")
    run.add_argument("--resume", action="store_true", help="continue a killed run from its checkpoint")
    run.set_defaults(func=_run)

    config = sub.add_parser("config", help="show a resolved config, list built-ins, or document every field",
                            description="Inspect configurations.")  # fmt: skip
    config.add_argument("action", choices=["show", "list", "fields"], help="show: resolved YAML; list: built-in "
                        "configs; fields: every key with default, range and help")  # fmt: skip
    config.add_argument("config", nargs="?", help="YAML file or built-in name (for show)")
    config.add_argument("overrides", nargs="*", help="dotted overrides (for show)")
    config.set_defaults(func=_config)

    build = sub.add_parser("build-tiny", help="rebuild a built-in tiny model from scratch (pretraining)",
                           description="Rebuild the built-in tiny model; arguments go to the build script "
                                       "(try: rftlab build-tiny -- --help).", add_help=True)  # fmt: skip
    build.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the build script")
    build.set_defaults(func=_build_tiny)

    for module in ("rftlab.bandit.cli", "rftlab.pipeline.cli"):
        try:
            mod = __import__(module, fromlist=["add_parser"])
        except ImportError:
            continue
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return int(args.func(args) or 0)
    except RftlabError as err:
        if args.verbose:
            raise
        print(f"rftlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rftlab: interrupted (a run resumes with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser", "format_summary", "json"]
