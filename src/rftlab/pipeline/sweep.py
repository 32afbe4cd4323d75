"""A sweep: spec -> plan -> (skip missing models) -> executor -> pipeline.json and run directories.

    <out>/pipeline.json    the spec, the options, and every (layer, variant, seed) with its run
                           directory and status (done / failed / skipped: <why> / busy: held by
                           another sweep that has not finished it)
    <out>/runs/<run>/      run directories (identical configurations share one)

The `rftlab pipeline` command (rftlab.commands.pipeline) composes this sweep with the bandit
counterparts (<out>/bandit/) and the report (<out>/report.html, findings.json, analysis.json, figures/).

Running the same command again skips finished runs and resumes unfinished ones from their
checkpoints, so a killed sweep finishes without redoing work and gives the same report. Two sweeps on
one directory share the work: a run the other holds is reported as held (not failed), waited for
after this sweep's own runs, and then counted done (or resumed here if its holder died).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from rftlab.config import config_from_dict
from rftlab.files import PIPELINE_FILE, write_atomic
from rftlab.pipeline.executors import (
    HELD,
    RunResult,
    RunTask,
    execute,
    is_finished,
    machine_cpus,
    wants_gpu,
)
from rftlab.pipeline.spec import PipelineSpec, PlannedRun, load_spec, plan, spec_to_dict
from rftlab.policy import model_unavailable
from rftlab.runs import run_lock
from rftlab.tracking import sweep_labels
from rftlab.trainer import difficulty_settings

# Rough seconds per unit on one CPU core, used to order runs (longest first) and to print an
# estimate before a sweep; measured on tiny (see the pipeline spec's comments). Not a promise.
# Fitted (least squares on each run's time/training_s and time/evaluation_s) to the full `paper`
# sweep of 2026-11-30 (142 runs, 2 workers, the lean engine and the shared-prompt update, idle
# machine); smollm2-135m's factor is from its L5 runs there (measured 9-10x tiny's estimate).
COST = {"startup": 3.0, "round": 0.044, "rollout": 0.0136, "eval_seq": 0.0073, "model": {"smollm2-135m": 9.5}}


def model_status(name: str, *, device: str = "auto", check_cuda: bool = True) -> str | None:
    """None if the model can be loaded here, else a one-line reason (the report shows it)."""
    if check_cuda and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return f"model.device={device} but this machine has no CUDA device (use --executor ray on a GPU cluster)"
    return model_unavailable(name, hub=check_cuda)  # a Ray cluster fetches hub models itself


def estimate_seconds(config: dict) -> float:
    """A rough single-core cost of one run (for ordering and the printed estimate)."""
    t, r, e, d = config["train"], config["rollout"], config["eval"], config["data"]
    evals = 2 + (t["rounds"] // e["every"] if e["every"] else 0)
    mix = d.get("mix") or {}
    test_sets, examples, per_round = 1, d["train_examples"], t["examples_per_round"]
    if mix.get("tasks"):  # data.mix: a test set per task evaluated, per-task example counts
        test_sets = len(mix["tasks"]) + len(mix.get("eval_tasks") or [])
        examples = sum(mix.get("examples") or [1] * len(mix["tasks"]))
        per_round = sum(mix.get("per_round") or [1] * len(mix["tasks"]))
    per_eval = (
        test_sets * d["test_size"] * (e["test_samples"] if e["test_mode"] == "sample" else 1)
        + examples * e["train_samples"]
    )
    tokens = r["max_new_tokens"] / 160
    seconds = (
        COST["startup"]
        + t["rounds"] * (COST["round"] + COST["rollout"] * per_round * r["rollouts_per_round"] * tokens)
        + evals * per_eval * COST["eval_seq"] * tokens
    )
    return seconds * COST["model"].get(config["model"]["name"], 1.0)


def difficulty_group(config: dict) -> str:
    """Runs that need the same base-Pass@1 estimate (selection.py caches it): one computes, then the rest.

    The group is the estimate's own cache key (`trainer.difficulty_settings`), less the weights'
    fingerprint (no model is loaded here), so scheduling and caching agree on what is shared.
    """
    cfg = config_from_dict(config)
    d = cfg.data
    if d.difficulty == "any" or d.train_example_ids:
        return ""
    settings = difficulty_settings(cfg, None, d.prompt_style, d.answer_format, samples=d.difficulty_samples)
    tasks = f"|tasks:{'+'.join(d.mix.tasks)}" if d.mix.tasks else ""  # data.mix: one estimate per task
    return "difficulty:" + "|".join(map(str, asdict(settings).values())) + tasks


def label_for_tracking(
    spec: PipelineSpec, runs: list[PlannedRun], *, quick: bool, seeds: int | None, report_to: str | list | None
) -> list[PlannedRun]:
    """Runs that report to a tracking backend carry their layer/variant/seed grouping (tracking.sweep_labels).

    Set after the run directories are named (the labels are not part of a run's identity); a run shared by
    layers gets every (layer, variant) it serves, from the whole spec, so `--layers` does not change them.
    """
    if report_to is not None:
        runs = [replace(r, config={**r.config, "run": {**r.config["run"], "report_to": report_to}}) for r in runs]
    if not any(config_from_dict(r.config).run.report_backends for r in runs):
        return runs
    memberships: dict[str, list[tuple[str, str]]] = {}
    for r in plan(spec, quick=quick, seeds=seeds):
        if (r.layer, r.variant) not in memberships.setdefault(r.run, []):
            memberships[r.run].append((r.layer, r.variant))
    labelled = [replace(r, config=sweep_labels(r.config, memberships[r.run], r.seed, spec.name)) for r in runs]
    for r in labelled:
        config_from_dict(r.config)  # a bad --report-to fails here, before anything runs
    return labelled


def _tasks(runs: list[PlannedRun], out: Path, cpus_per_run: int) -> list[RunTask]:
    tasks, seen = [], set()
    for r in runs:
        if r.run in seen:
            continue
        seen.add(r.run)
        gpu = wants_gpu(r.config)
        tasks.append(
            RunTask(
                r.run,
                str(out / "runs" / r.run),
                r.config,
                num_cpus=cpus_per_run,
                num_gpus=1.0 if gpu else 0.0,
                group=difficulty_group(r.config),
            )
        )
    tasks.sort(key=lambda t: -estimate_seconds(t.config))  # longest first: no long tail at the end
    # each group's cheapest run goes first: it fills the shared cache, and its followers wait less
    leaders = {}
    for t in tasks:  # longest first, so the last one kept per group is its cheapest
        if t.group:
            leaders[t.group] = t
    first = sorted(leaders.values(), key=lambda t: estimate_seconds(t.config))
    return first + [t for t in tasks if t not in first]


def run_status(result: RunResult, out: str | Path) -> dict:
    """A run's entry in pipeline.json. A run another sweep held is `done` once finished (by either
    sweep), else `busy` with the reason; it is never counted as failed."""
    if result.status in ("done", "skipped") or is_finished(out):
        return {"status": "done"}
    entry = {"status": result.status}
    if result.error:
        entry["reason"] = result.error
    return entry


def write_pipeline_file(
    out: Path, spec: PipelineSpec, runs: list[PlannedRun], statuses: dict[str, dict], options: dict
) -> None:
    entries = []
    for r in runs:
        entries.append(
            {
                "layer": r.layer,
                "variant": r.variant,
                "seed": r.seed,
                "run": r.run,
                "model": r.model,
                **statuses.get(r.run, {"status": "pending"}),
            }
        )
    data = {"spec": spec_to_dict(spec), "options": options, "entries": entries}
    write_atomic(out / PIPELINE_FILE, json.dumps(data, indent=1) + "\n")  # two sweeps may both write it


def run_sweep(
    source: str,
    out: str | Path,
    *,
    seeds: int | None = None,
    executor: str = "local",
    workers: int | None = None,
    quick: bool = False,
    layers: list[str] | None = None,
    keep_checkpoints: bool = False,
    dry_run: bool = False,
    progress: bool = True,
    ray_address: str | None = None,
    train_fn=None,
    check_models: bool = True,
    report_to: str | list | None = None,
) -> dict:
    """Plan and run a sweep; returns {"runs": n, "done": .., "failed": .., "skipped": ..}.

    `report_to` (rftlab pipeline --report-to) sets every run's run.report_to without changing run
    directory names, so tracking can be turned on for a sweep that has already started.
    """
    spec = load_spec(source, validate=False)
    runs = plan(spec, quick=quick, seeds=seeds, layers=layers)  # validates every config first
    plan(spec, quick=not quick, seeds=1, layers=layers)  # and the other mode's, so a typo fails early
    runs = label_for_tracking(spec, runs, quick=quick, seeds=seeds, report_to=report_to)
    out = Path(out)
    cpus = machine_cpus()
    n_workers = workers or cpus
    check_cuda = executor != "ray"  # a Ray cluster's GPUs are not on this machine
    missing = {}
    for r in runs:
        key = (r.model, r.config["model"]["device"])
        if key not in missing:
            missing[key] = model_status(r.model, device=key[1], check_cuda=check_cuda) if check_models else None
    statuses: dict[str, dict] = {}
    for r in runs:
        reason = missing[(r.model, r.config["model"]["device"])]
        if reason:
            statuses[r.run] = {"status": "skipped", "reason": reason}
    runnable = [r for r in runs if r.run not in statuses]
    cpus_per_run = max(1, cpus // max(1, n_workers)) if executor != "ray" else 1
    tasks = _tasks(runnable, out, cpus_per_run)
    unique = len({r.run for r in runs})
    already = sum(is_finished(t.out) for t in tasks)
    todo_cost = sum(estimate_seconds(t.config) for t in tasks if not is_finished(t.out))
    parallel = min(n_workers, cpus) if executor != "ray" else n_workers
    print(
        f"rftlab pipeline {spec.name}{' (quick)' if quick else ''}: {len(spec.layers if not layers else layers)} "
        f"layers, {len(runs)} (variant, seed) pairs, {unique} distinct runs, {already} finished before, "
        f"{len(tasks) - already} to run; rough estimate {todo_cost / max(1, parallel) / 60:.1f} min with "
        f"{parallel} worker(s) -> {out}",
        file=sys.stderr,
    )
    for (model, device), reason in missing.items():
        if reason:
            print(f"  skipping model {model} ({device}): {reason}", file=sys.stderr)
    options = {
        "quick": quick,
        "seeds": seeds or (spec.quick_seeds if quick else spec.seeds),
        "layers": layers,
        "executor": executor,
        "workers": n_workers,
    }
    if dry_run:
        for t in tasks:
            print(f"  {t.name}  ~{estimate_seconds(t.config):.0f} s{'  (finished)' if is_finished(t.out) else ''}")
        return {"runs": unique, "done": already, "failed": 0, "skipped": len(statuses)}
    (out / "runs").mkdir(parents=True, exist_ok=True)
    write_pipeline_file(out, spec, runs, statuses, options)
    run_all = functools.partial(
        execute,
        executor=executor,
        workers=n_workers,
        train_fn=train_fn,
        progress=progress,
        keep_checkpoint=keep_checkpoints,
        ray_address=ray_address,
    )
    results = run_all(tasks)
    by_name = {t.name: t for t in tasks}
    for res in results:
        statuses[res.name] = run_status(res, by_name[res.name].out)
    write_pipeline_file(out, spec, runs, statuses, options)
    held = [by_name[r.name] for r in results if statuses[r.name]["status"] == "busy"]
    if held:
        # another sweep (or rftlab run) holds these: wait for it to let go, then finish what it left
        print(f"  {len(held)} run(s) {HELD}; waiting for it: {', '.join(t.name for t in held)}", file=sys.stderr)
        for t in held:
            with run_lock(t.out, wait=True):
                pass
        again = run_all(held)
        again_by_name = {r.name: r for r in again}
        results = [again_by_name.get(r.name, r) for r in results]
        for res in again:
            statuses[res.name] = run_status(res, by_name[res.name].out)
        write_pipeline_file(out, spec, runs, statuses, options)
    failed = [r for r in results if statuses[r.name]["status"] == "failed"]
    for r in failed:
        print(f"  run {r.name} failed: {r.error}", file=sys.stderr)
    held = [name for name, entry in statuses.items() if entry["status"] == "busy"]
    for name in held:  # taken again while we waited (e.g. a third process)
        print(f"  run {name}: {HELD}; not finished yet, run the sweep again later", file=sys.stderr)
    return {
        "runs": unique,
        "done": sum(statuses[r.name]["status"] == "done" for r in results),
        "failed": len(failed),
        "held": len(held),  # held: taken again by another process meanwhile
        "skipped": len({k for k, v in statuses.items() if v["status"] == "skipped"}),
        "results": [asdict(r) for r in results],
    }
