"""Load problems by name: vendored GSM8K / MATH-500, a local file, a hub dataset, or synthetic ones.

`load_problems(dataset, split)` is what the trainer calls. `dataset` is one of
- `gsm8k` (train 7473 / test 1319) and `math500` (test 500): shipped inside the package under
  `rftlab/data/`, found through `importlib.resources`, so an installed package works offline;
- `math`: the MATH row format read from the user's own file (`path=`); `gsm8k` with `path=` reads
  a GSM8K-format file the same way;
- a `.jsonl`, `.json` or `.parquet` path: the row format (`gsm8k`/`math`) is guessed from the
  fields, or given with `format=`;
- `hub:<name>` or `hub:<name>:<config>` (e.g. `hub:openai/gsm8k`): through the `datasets`
  library when it is installed and a hub is reachable (it is not a dependency);
- `synthetic`: generated arithmetic word problems (`rftlab.tasks.synthetic`).

Ids are stable and say where a problem came from: `gsm8k/test/0` (0-based row of a vendored
split), `<file stem>/<line>` (1-based line of a `.jsonl`, 1-based row of `.json`/`.parquet`),
`<hub name>/<split>/<row>`.

Custom field names: `fields={"question": "prompt", "answer": "target"}` reads a row's `prompt` as
its question and `target` as its answer (config `data.question_field`, `data.answer_field`); the
row format then decides how the answer is read (`gsm8k`: a `#### N` last line; `math`: a boxed
answer, or a bare one-line answer).

A malformed row raises DataError naming file, line and field, and the setting that skips it
(`data/x.jsonl line 7: missing field 'question' (data.on_bad_row=skip leaves such rows out)`); with
`on_bad_row="skip"` it is skipped instead. `load_problems_result` returns the skipped rows with the
problems; `load_problems` logs one warning line with their count.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rftlab.errors import ConfigError, DataError
from rftlab.tasks.problem import Problem
from rftlab.tasks.rows import FORMATS, ROW_PARSERS, RowError, guess_format

log = logging.getLogger(__name__)

VENDORED_SPLITS: dict[str, tuple[str, ...]] = {"gsm8k": ("train", "test"), "math500": ("test",)}
VENDORED_FORMATS: dict[str, str] = {"gsm8k": "gsm8k", "math500": "math"}
SYNTHETIC_SPLITS: tuple[str, ...] = ("train", "test")
SYNTHETIC_DEFAULT_SIZE = 500
FILE_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".parquet")
ON_BAD_ROW: tuple[str, ...] = ("error", "skip")
# Hub datasets that need a config name to load; used when `hub:<name>` gives none.
HUB_DEFAULT_CONFIGS: dict[str, str] = {"openai/gsm8k": "main", "gsm8k": "main"}
DATASETS_HELP = "gsm8k, math500, math (with path=), synthetic, a .jsonl/.json/.parquet file, or hub:<name>[:<config>]"
SKIP_HINT = "data.on_bad_row=skip leaves such rows out"
FIELD_ROLES: tuple[str, ...] = ("question", "answer")


@dataclass(frozen=True)
class SkippedRow:
    """A malformed row left out under `on_bad_row="skip"`: where it is and what is wrong."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class LoadResult:
    """The problems loaded, and the malformed rows skipped on the way (empty in "error" mode)."""

    problems: list[Problem]
    skipped: list[SkippedRow] = field(default_factory=list)


def load_options(data: Any) -> dict[str, Any]:
    """`load_problems` keyword arguments from a run's `data.*` config (bad-row policy, row format, field
    names): one place, so training, export and sampling read a user's file the same way."""
    return dict(
        on_bad_row=data.on_bad_row,
        format=None if data.format == "auto" else data.format,
        fields={"question": data.question_field, "answer": data.answer_field},
    )


def load_problems(
    dataset: str,
    split: str = "test",
    *,
    path: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    on_bad_row: str = "error",
    format: str | None = None,
    fields: Mapping[str, str] | None = None,
) -> list[Problem]:
    """The problems of `dataset` (see the module docstring), at most `limit` of them, in file order.

    `split` picks a vendored, hub or synthetic split (a local file is one split: `split` is
    ignored); `format` ("gsm8k" or "math") overrides the row-format guess for files and hub data.
    Skipped rows (`on_bad_row="skip"`) are reported in one warning line; use
    `load_problems_result` to get them. `fields` maps "question"/"answer" to your rows' own field names.
    """
    result = load_problems_result(
        dataset, split, path=path, limit=limit, on_bad_row=on_bad_row, format=format, fields=fields
    )
    if result.skipped:
        log.warning("skipped %d malformed row(s) of %s; first: %s", len(result.skipped), dataset, result.skipped[0])
    return result.problems


def load_problems_result(
    dataset: str,
    split: str = "test",
    *,
    path: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    on_bad_row: str = "error",
    format: str | None = None,
    fields: Mapping[str, str] | None = None,
) -> LoadResult:
    """Like `load_problems`, but returns the skipped rows along with the problems."""
    _check_options(limit, on_bad_row, format)
    rename = _field_renames(fields)
    if not isinstance(dataset, str | os.PathLike):
        raise ConfigError(f"dataset must be a name or a path, got {type(dataset).__name__}; valid: {DATASETS_HELP}")
    name = os.fspath(dataset)
    if name.startswith("hub:"):
        return _load_hub(name[4:], split, fmt=format, limit=limit, on_bad_row=on_bad_row, rename=rename)
    if name in ("gsm8k", "math500", "math") and path is not None:
        return _load_file(
            Path(path),
            fmt=format or VENDORED_FORMATS.get(name, "math"),
            limit=limit,
            on_bad_row=on_bad_row,
            rename=rename,
        )
    if name in VENDORED_SPLITS:
        return _load_vendored(name, split, limit=limit, on_bad_row=on_bad_row)
    if name == "math":
        raise ConfigError(
            "dataset 'math' reads your own MATH-format file: pass path=...; the vendored MATH-500 is 'math500'"
        )
    if name == "synthetic":
        return LoadResult(_load_synthetic(split, limit))
    if path is not None:
        raise ConfigError(f"path= goes with dataset gsm8k, math or math500, not {name!r}")
    if name.lower().endswith(FILE_SUFFIXES) or Path(name).exists():
        return _load_file(Path(name), fmt=format, limit=limit, on_bad_row=on_bad_row, rename=rename)
    raise ConfigError(f"unknown dataset {name!r}; valid: {DATASETS_HELP}")


def is_local_file(dataset: str) -> bool:
    """Whether `dataset` names a local data file (one split: train and test must be told apart)."""
    name = os.fspath(dataset)
    if name.startswith("hub:") or name in VENDORED_SPLITS or name in ("math", "synthetic"):
        return False
    return name.lower().endswith(FILE_SUFFIXES) or Path(name).exists()


def normalize_question(text: str) -> str:
    """A question as compared for train/test overlap: case and runs of whitespace ignored."""
    return " ".join(text.lower().split())


def question_overlap(train: Iterable[Problem], test: Iterable[Problem]) -> list[tuple[Problem, Problem]]:
    """(training problem, test problem) pairs whose questions are equal once normalized."""
    by_question = {normalize_question(p.question): p for p in test}
    return [(p, by_question[q]) for p in train if (q := normalize_question(p.question)) in by_question]


def _field_renames(fields: Mapping[str, str] | None) -> dict[str, str]:
    """{your field: the format's field} for the roles given; a role the formats do not have is refused."""
    rename = {}
    for role, own in (fields or {}).items():
        if role not in FIELD_ROLES:
            raise ConfigError(f"fields: unknown role {role!r}; valid: {', '.join(FIELD_ROLES)}")
        if own:
            rename[own] = role
    return rename


def _check_options(limit: int | None, on_bad_row: str, fmt: str | None) -> None:
    if on_bad_row not in ON_BAD_ROW:
        raise ConfigError(f"on_bad_row {on_bad_row!r} is unknown; valid: {', '.join(ON_BAD_ROW)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be a non-negative integer or None, got {limit!r}")
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r} is unknown; valid: {', '.join(FORMATS)}")


# ---------------------------------------------------------------------------------------------
# turning rows into problems


def _parse_rows(
    rows: Iterable[tuple[str, str, Any]],
    *,
    fmt: str | None,
    source: str,
    limit: int | None,
    on_bad_row: str,
    label: str,
    rename: Mapping[str, str] | None = None,
) -> LoadResult:
    """Rows as `(id, where, row or RowError)` -> problems; `where` is `<file> line N` for errors.

    The row format is `fmt`, or guessed from the first row whose fields tell it. `rename` maps a
    row's own field names to the format's (`data.question_field`, `data.answer_field`).
    """
    result = LoadResult(problems=[])
    for id_, where, row in rows:
        if limit is not None and len(result.problems) >= limit:
            break
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, Mapping):
                raise RowError(f"expected an object with named fields, got {type(row).__name__}")
            if rename:
                missing = [own for own in rename if own not in row]
                if missing:
                    raise RowError(f"missing field {missing[0]!r} (data.{rename[missing[0]]}_field)")
                replaced = set(rename.values()) | ({"problem"} if "question" in rename.values() else set())
                row = {**{k: v for k, v in row.items() if k not in replaced}, **_renamed(row, rename)}
            fmt = fmt or guess_format(row)
            if fmt is None:
                raise DataError(
                    f"{label}: cannot tell the row format from the fields {sorted(row)[:8]}; set data.format=gsm8k "
                    f"(answer ends '#### N') or data.format=math (boxed or bare answer), and data.question_field / "
                    f"data.answer_field for other field names"
                )
            result.problems.append(ROW_PARSERS[fmt](row, id=id_, source=source))
        except RowError as e:
            if on_bad_row == "error":
                raise DataError(f"{where}: {e} ({SKIP_HINT})") from None
            result.skipped.append(SkippedRow(where, str(e)))
    return result


def _renamed(row: Mapping[str, Any], rename: Mapping[str, str]) -> dict[str, Any]:
    return {role: row[own] for own, role in rename.items()}


def _jsonl_rows(text: str, label: str, id_prefix: str, *, zero_based_ids: bool) -> Iterator[tuple[str, str, Any]]:
    """(id, where, row) per non-blank line; bad JSON yields a RowError for that line."""
    index = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row: Any = json.loads(line)
        except json.JSONDecodeError as e:
            row = RowError(f"bad JSON ({e.msg} at column {e.colno})")
        yield f"{id_prefix}/{index if zero_based_ids else number}", f"{label} line {number}", row
        index += 1


# ---------------------------------------------------------------------------------------------
# sources


def vendored_path(dataset: str, split: str):
    """The packaged file of a vendored split (a `Traversable`: works from a wheel or a checkout)."""
    return resources.files("rftlab") / "data" / dataset / f"{split}.jsonl"


def _load_vendored(dataset: str, split: str, *, limit: int | None, on_bad_row: str) -> LoadResult:
    splits = VENDORED_SPLITS[dataset]
    if split not in splits:
        raise ConfigError(f"dataset {dataset!r} has no split {split!r}; valid: {', '.join(splits)}")
    label = f"rftlab/data/{dataset}/{split}.jsonl"
    try:
        text = vendored_path(dataset, split).read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError) as e:
        raise DataError(f"vendored data file {label} is missing from the installed package ({e})") from None
    rows = _jsonl_rows(text, label, f"{dataset}/{split}", zero_based_ids=True)
    return _parse_rows(
        rows, fmt=VENDORED_FORMATS[dataset], source=dataset, limit=limit, on_bad_row=on_bad_row, label=label
    )


def _load_file(
    path: Path, *, fmt: str | None, limit: int | None, on_bad_row: str, rename: Mapping[str, str] | None = None
) -> LoadResult:
    """A local .jsonl / .json / .parquet file; ids are `<stem>/<line or 1-based row>`."""
    label = str(path)
    if not path.is_file():
        raise DataError(f"data file not found: {label}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows = _parquet_rows(path, label)
    elif suffix in (".jsonl", ".json"):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read data file {label}: {e}") from None
        rows = (
            _json_rows(text, label, path.stem)
            if suffix == ".json"
            else _jsonl_rows(text, label, path.stem, zero_based_ids=False)
        )
    else:
        raise DataError(f"data file {label}: unknown file type {suffix!r}; valid: {', '.join(FILE_SUFFIXES)}")
    return _parse_rows(rows, fmt=fmt, source=path.stem, limit=limit, on_bad_row=on_bad_row, label=label, rename=rename)


def _json_rows(text: str, label: str, stem: str) -> Iterator[tuple[str, str, Any]]:
    """A .json file: a list of rows, an object holding one (`data`, `rows`, ...), or JSON lines."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) > 1 and lines[0].lstrip().startswith("{"):
            return _jsonl_rows(text, label, stem, zero_based_ids=False)  # JSON lines named .json
        raise DataError(f"{label} line {e.lineno}: bad JSON ({e.msg})") from None
    if isinstance(data, Mapping):
        lists = [k for k in ("data", "rows", "examples", "problems", "train", "test") if isinstance(data.get(k), list)]
        if not lists:
            raise DataError(f"{label}: expected a list of rows, or an object with one under 'data' or 'rows'")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise DataError(f"{label}: expected a list of rows, got {type(data).__name__}")
    return ((f"{stem}/{i}", f"{label} row {i}", row) for i, row in enumerate(data, start=1))


def _parquet_rows(path: Path, label: str) -> Iterator[tuple[str, str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"reading {label} needs pyarrow (pip install pyarrow, or rftlab[parquet]); or convert it to .jsonl"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"cannot read parquet file {label}: {_first_line(e)}") from None
    return ((f"{path.stem}/{i}", f"{label} row {i}", row) for i, row in enumerate(table.to_pylist(), start=1))


def _load_hub(
    name: str,
    split: str,
    *,
    fmt: str | None,
    limit: int | None,
    on_bad_row: str,
    rename: Mapping[str, str] | None = None,
) -> LoadResult:
    """`hub:<name>[:<config>]` through `datasets`; one clear line when it cannot be had."""
    repo, _, config = name.partition(":")
    if not repo:
        raise ConfigError("hub: needs a dataset name, e.g. hub:openai/gsm8k")
    instead = "download it elsewhere and pass a local .jsonl/.json/.parquet file instead"
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"hub:{name} needs the 'datasets' library, which is not installed: pip install datasets, or {instead}"
        ) from None
    try:
        ds = datasets.load_dataset(repo, config or HUB_DEFAULT_CONFIGS.get(repo), split=split)
        if limit is not None and hasattr(ds, "select"):
            ds = ds.select(range(min(limit, len(ds))))
        rows = list(ds)
    except Exception as e:  # noqa: BLE001 - offline, unknown name, bad split: all one message
        raise DataError(
            f"could not load hub:{name} split {split!r} ({type(e).__name__}: {_first_line(e)}); offline? {instead}"
        ) from None
    label = f"hub:{name}"
    entries = ((f"{repo}/{split}/{i}", f"{label} {split} row {i}", row) for i, row in enumerate(rows))
    return _parse_rows(entries, fmt=fmt, source=repo, limit=limit, on_bad_row=on_bad_row, label=label, rename=rename)


def _load_synthetic(split: str, limit: int | None) -> list[Problem]:
    """Generated problems: seed 0 for train, 1 for test, and the generator's own split of questions."""
    if split not in SYNTHETIC_SPLITS:
        raise ConfigError(f"dataset 'synthetic' has no split {split!r}; valid: {', '.join(SYNTHETIC_SPLITS)}")
    try:
        from rftlab.tasks.synthetic import generate_problems
    except ImportError as e:
        raise DataError(f"dataset 'synthetic' is not available: {e}") from None
    n = SYNTHETIC_DEFAULT_SIZE if limit is None else limit
    if n == 0:
        return []
    return generate_problems(n=n, seed=0 if split == "train" else 1, split=split)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__
