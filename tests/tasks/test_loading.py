"""Loaders: vendored GSM8K / MATH-500, local files (jsonl, json, parquet), hub and synthetic sources."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import pytest

from rftlab import rewards
from rftlab.errors import ConfigError, DataError, RftlabError
from rftlab.rewards import is_correct, last_boxed, score
from rftlab.tasks import LoadResult, Problem, load_problems, load_problems_result
from rftlab.tasks.loading import vendored_path

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def gsm8k_test() -> list[Problem]:
    return load_problems("gsm8k", "test")


@pytest.fixture(scope="module")
def gsm8k_train() -> list[Problem]:
    return load_problems("gsm8k", "train")


@pytest.fixture(scope="module")
def math500() -> list[Problem]:
    return load_problems("math500", "test")


def _raw_rows(dataset: str, split: str) -> list[dict]:
    """The vendored file read without the loader, to check the loader against."""
    text = vendored_path(dataset, split).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ vendored data


def test_vendored_sizes(gsm8k_test: list[Problem], gsm8k_train: list[Problem], math500: list[Problem]) -> None:
    assert len(gsm8k_test) == 1319
    assert len(gsm8k_train) == 7473
    assert len(math500) == 500


def test_vendored_files_are_package_resources() -> None:
    for dataset, split in (("gsm8k", "train"), ("gsm8k", "test"), ("math500", "test")):
        assert vendored_path(dataset, split).is_file()
    for license_file in ("gsm8k/LICENSE", "math500/LICENSE", "README.md"):
        assert (vendored_path("gsm8k", "test").parent.parent / license_file).is_file()


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the project's shared data folder is not beside the repo")
def test_vendored_files_match_the_shared_data() -> None:
    for rel in ("gsm8k/train.jsonl", "gsm8k/test.jsonl", "gsm8k/LICENSE", "math500/test.jsonl"):
        dataset, name = rel.split("/")
        vendored = vendored_path(dataset, "x").parent / name
        assert vendored.read_bytes() == (SHARED_DATA / rel).read_bytes(), rel


def test_gsm8k_first_rows(gsm8k_test: list[Problem], gsm8k_train: list[Problem]) -> None:
    first = gsm8k_test[0]
    assert first.id == "gsm8k/test/0"
    assert first.question.startswith("Janet")
    assert first.answer == "18"  # 16 - 3 - 4 = 9 eggs at $2
    assert first.metadata["solution"].endswith("#### 18")
    assert first.prompt_style == "gsm8k" and first.source == "gsm8k"
    assert gsm8k_train[0].id == "gsm8k/train/0"
    for problems, split in ((gsm8k_test, "test"), (gsm8k_train, "train")):
        raw = _raw_rows("gsm8k", split)
        for p, row in zip(problems[:20], raw[:20], strict=True):
            assert p.question == row["question"].strip()
            assert p.answer == row["answer"].strip().splitlines()[-1].removeprefix("####").strip().replace(",", "")


def test_gsm8k_answers_are_bare_numbers(gsm8k_test: list[Problem], gsm8k_train: list[Problem]) -> None:
    for p in gsm8k_test + gsm8k_train:
        float(p.answer)  # no commas, no '#### ', no units
        assert "," not in p.answer


def test_math500_first_rows(math500: list[Problem]) -> None:
    first = math500[0]
    assert first.id == "math500/test/0" and math500[17].id == "math500/test/17"
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.prompt_style == "math" and first.source == "math500"
    raw = _raw_rows("math500", "test")
    for p, row in zip(math500, raw, strict=True):
        assert p.answer == last_boxed(row["answer"])
        # this copy also states the answer after "The answer is:"; the two must agree
        assert p.answer == row["answer"].rsplit("The answer is:", 1)[1].strip()
        assert p.metadata["solution"] == row["answer"].strip()


def test_ids_are_unique(gsm8k_test: list[Problem], gsm8k_train: list[Problem], math500: list[Problem]) -> None:
    ids = [p.id for p in gsm8k_test + gsm8k_train + math500]
    assert len(set(ids)) == len(ids)


def test_every_gsm8k_answer_round_trips(gsm8k_test: list[Problem], gsm8k_train: list[Problem]) -> None:
    """Fed back as the paper's `#### N`, each reference counts as correct (the fast path)."""
    for p in gsm8k_test + gsm8k_train:
        assert score(f"Let me think.\n#### {p.answer}", p.answer, "gsm8k_strict"), p.id
        assert is_correct(f"#### {p.answer}", p.metadata["solution"]), p.id


def test_every_math500_answer_round_trips(math500: list[Problem], monkeypatch: pytest.MonkeyPatch) -> None:
    """Fed back as `\\boxed{answer}`, each reference counts as correct without math-verify."""

    def no_math_verify(*args: object) -> bool:
        raise AssertionError("the fast path should decide a reference fed back to itself")

    monkeypatch.setattr(rewards, "_math_verify_equal", no_math_verify)
    for p in math500:
        assert score(f"So the answer is $\\boxed{{{p.answer}}}$.", p.answer, "boxed"), p.id
        assert is_correct(f"\\boxed{{{p.answer}}}", p.metadata["solution"]), p.id


def test_every_math500_answer_is_self_equivalent_under_math_verify(math500: list[Problem]) -> None:
    """All 500 through math-verify itself (about 4 s on 2 cores), so the slow path agrees too."""
    failures = [p.id for p in math500 if not rewards._math_verify_equal(p.answer, p.answer, 10.0)]
    assert failures == []


def test_limit_and_splits() -> None:
    five = load_problems("gsm8k", "train", limit=5)
    assert [p.id for p in five] == [f"gsm8k/train/{i}" for i in range(5)]
    assert load_problems("math500", limit=0) == []
    with pytest.raises(ConfigError, match="test"):
        load_problems("math500", "train")
    with pytest.raises(ConfigError, match="train, test"):
        load_problems("gsm8k", "validation")


# ------------------------------------------------------------------------------------------ names and options


def test_unknown_dataset_lists_the_valid_ones() -> None:
    with pytest.raises(RftlabError) as err:
        load_problems("gsm9k")
    for name in ("gsm8k", "math500", "math", "synthetic", "hub:"):
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="hub:"):
        load_problems("openai/gsm8k")  # a hub name without its prefix is not taken for a file


def test_math_needs_a_path() -> None:
    with pytest.raises(ConfigError, match="path="):
        load_problems("math")


@pytest.mark.parametrize("kwargs", [{"on_bad_row": "ignore"}, {"limit": -1}, {"limit": 2.5}, {"format": "csv"}])
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        load_problems("gsm8k", **kwargs)


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError) as err:
        load_problems(str(missing))
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="not found"):
        load_problems("math", path=missing)


# ------------------------------------------------------------------------------------------ local files


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GSM_ROWS = [
    {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2+3=<<2+3=5>>5\n#### 5"},
    {"question": "A shop sells 1,000 pens a day for 2 days. How many?", "answer": "1000*2=2000\n#### 2,000"},
]
MATH_ROWS = [
    {
        "problem": "What is 1/2 + 0?",
        "solution": "It is $\\boxed{\\frac{1}{2}}$.",
        "level": "Level 1",
        "type": "Algebra",
    },
    {
        "problem": "Compute $\\sqrt{4}$.",
        "solution": "Try \\boxed{3}. No: $\\boxed{2}$.",
        "subject": "Algebra",
    },
]


def test_gsm8k_file_format_guessed(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "mine.jsonl", GSM_ROWS)
    problems = load_problems(str(path))
    assert [p.answer for p in problems] == ["5", "2000"]
    assert [p.id for p in problems] == ["mine/1", "mine/2"]
    assert all(p.prompt_style == "gsm8k" for p in problems)
    assert problems[1].metadata["solution"].endswith("#### 2,000")
    assert load_problems("gsm8k", path=path) == problems


def test_math_file_format_guessed_keeps_metadata(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "algebra.jsonl", MATH_ROWS)
    problems = load_problems(str(path))
    assert [p.answer for p in problems] == ["\\frac{1}{2}", "2"]  # the LAST box
    assert problems[0].metadata["level"] == "Level 1" and problems[0].metadata["type"] == "Algebra"
    assert problems[1].metadata["subject"] == "Algebra"
    assert all(p.prompt_style == "math" for p in problems)
    assert load_problems("math", path=path) == problems


def test_math_row_with_explicit_answer(tmp_path: Path) -> None:
    rows = [
        {"question": "Q1", "solution": "long work \\boxed{4}", "answer": "4.0"},
        {"problem": "Q2", "answer": "\\frac{3}{4}"},  # a bare one-line answer
    ]
    problems = load_problems("math", path=_write_jsonl(tmp_path / "h4.jsonl", rows))
    assert [p.answer for p in problems] == ["4.0", "\\frac{3}{4}"]
    assert "solution" not in problems[1].metadata


def test_ambiguous_file_needs_format(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "plain.jsonl", [{"question": "1+1?", "answer": "2"}])
    with pytest.raises(DataError, match="format="):
        load_problems(str(path))
    [problem] = load_problems(str(path), format="math")
    assert problem.answer == "2" and problem.prompt_style == "math"


def test_json_list_and_wrapped_files(tmp_path: Path) -> None:
    plain = tmp_path / "rows.json"
    plain.write_text(json.dumps(GSM_ROWS), encoding="utf-8")
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": GSM_ROWS}), encoding="utf-8")
    assert [p.id for p in load_problems(str(plain))] == ["rows/1", "rows/2"]
    assert [p.answer for p in load_problems(str(wrapped))] == ["5", "2000"]


def test_parquet_round_trip(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    source = load_problems("gsm8k", "test", limit=25)
    table = pa.Table.from_pylist([{"question": p.question, "answer": p.metadata["solution"]} for p in source])
    path = tmp_path / "gsm.parquet"
    pq.write_table(table, path)
    loaded = load_problems(str(path))
    assert [(p.question, p.answer, p.metadata["solution"]) for p in loaded] == [
        (p.question, p.answer, p.metadata["solution"]) for p in source
    ]
    assert loaded[0].id == "gsm/1"

    math_path = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist(MATH_ROWS), math_path)
    assert [p.answer for p in load_problems("math", path=math_path)] == ["\\frac{1}{2}", "2"]


# ------------------------------------------------------------------------------------------ malformed rows


@pytest.mark.parametrize(
    ("rows", "line", "needle"),
    [
        ([GSM_ROWS[0], GSM_ROWS[1], '{"question": "x", "answer": '], 3, "bad JSON"),
        ([GSM_ROWS[0], {"answer": "#### 3"}], 2, "missing field 'question'"),
        ([GSM_ROWS[0], {"question": "q", "answer": "no final line"}], 2, "field 'answer'"),
        ([GSM_ROWS[0], {"question": "q", "answer": "work\n#### many"}], 2, "field 'answer'"),
        ([GSM_ROWS[0], {"question": "", "answer": "#### 3"}], 2, "field 'question' is empty"),
        ([GSM_ROWS[0], {"question": ["q"], "answer": "#### 3"}], 2, "field 'question'"),
        ([GSM_ROWS[0], "", "", '["not", "an", "object"]'], 4, "expected an object"),
    ],
)
def test_malformed_gsm8k_rows_name_file_line_field(tmp_path: Path, rows: list, line: int, needle: str) -> None:
    path = _write_jsonl(tmp_path / "x.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_problems("gsm8k", path=path)
    message = str(err.value)
    assert message.startswith(f"{path} line {line}: "), message
    assert needle in message and "\n" not in message


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"problem": "p", "solution": "no box at all"}, "field 'solution' has no \\boxed"),
        ({"problem": "p", "solution": "unterminated \\boxed{3"}, "field 'solution'"),
        ({"problem": "p", "answer": "two lines\nand no box"}, "field 'answer' has no \\boxed"),
        ({"solution": "\\boxed{1}"}, "missing field 'question'"),
        ({"problem": "p"}, "missing field 'solution'"),
    ],
)
def test_malformed_math_rows(tmp_path: Path, row: dict, needle: str) -> None:
    path = _write_jsonl(tmp_path / "m.jsonl", [MATH_ROWS[0], row])
    with pytest.raises(DataError) as err:
        load_problems("math", path=path)
    assert str(err.value).startswith(f"{path} line 2: ") and needle in str(err.value)


def test_malformed_json_and_parquet_rows_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([GSM_ROWS[0], {"question": "q"}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"rows\.json row 2: missing field 'answer'"):
        load_problems(str(path))
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"question": "q",\n "answer": }\n]', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json line 3: bad JSON"):
        load_problems(str(broken))
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.Table.from_pylist([{"question": "q", "answer": "#### 1"}, {"question": None, "answer": "#### 2"}])
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t\.parquet row 2: missing field 'question'"):
        load_problems(str(tmp_path / "t.parquet"))


def test_skip_mode_counts_bad_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [GSM_ROWS[0], "{broken", {"answer": "#### 1"}, GSM_ROWS[1], {"question": "q", "answer": "none"}]
    path = _write_jsonl(tmp_path / "mixed.jsonl", rows)
    result = load_problems_result("gsm8k", path=path, on_bad_row="skip")
    assert isinstance(result, LoadResult)
    assert [p.id for p in result.problems] == ["mixed/1", "mixed/4"]
    assert [s.where for s in result.skipped] == [f"{path} line {n}" for n in (2, 3, 5)]
    assert "missing field 'question'" in str(result.skipped[1])

    with caplog.at_level(logging.WARNING, logger="rftlab.tasks.loading"):
        problems = load_problems("gsm8k", path=path, on_bad_row="skip")
    assert len(problems) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3 malformed" in warnings[0]


def test_skip_mode_with_limit_counts_good_rows(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "m.jsonl", [{"problem": "bad"}, *MATH_ROWS])
    result = load_problems_result("math", path=path, on_bad_row="skip", limit=1)
    assert [p.id for p in result.problems] == ["m/2"] and len(result.skipped) == 1


# ------------------------------------------------------------------------------------------ hub and synthetic


def test_hub_without_datasets_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DataError) as err:
        load_problems("hub:openai/gsm8k")
    message = str(err.value)
    assert "pip install datasets" in message and "local .jsonl" in message and "\n" not in message


def _fake_datasets(monkeypatch: pytest.MonkeyPatch, load_dataset) -> None:
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hub_offline_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)\nmore detail")

    _fake_datasets(monkeypatch, offline)
    with pytest.raises(DataError) as err:
        load_problems("hub:openai/gsm8k")
    message = str(err.value)
    assert "hub:openai/gsm8k" in message and "local .jsonl" in message and "\n" not in message


def test_hub_rows_become_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []

    def load_dataset(name: str, config: str | None, split: str) -> list[dict]:
        calls.append((name, config, split))
        return GSM_ROWS

    _fake_datasets(monkeypatch, load_dataset)
    problems = load_problems("hub:openai/gsm8k", "train")
    assert calls == [("openai/gsm8k", "main", "train")]  # GSM8K's hub copy needs its config
    assert [p.id for p in problems] == ["openai/gsm8k/train/0", "openai/gsm8k/train/1"]
    assert [p.answer for p in problems] == ["5", "2000"]


def test_hub_name_with_config(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []

    def load_dataset(name: str, config: str | None, split: str) -> list[dict]:
        calls.append((name, config, split))
        return MATH_ROWS

    _fake_datasets(monkeypatch, load_dataset)
    assert [p.answer for p in load_problems("hub:someone/math:algebra")] == ["\\frac{1}{2}", "2"]
    assert calls == [("someone/math", "algebra", "test")]


def test_synthetic_is_delegated() -> None:
    pytest.importorskip("rftlab.tasks.synthetic")
    test = load_problems("synthetic", "test", limit=5)
    train = load_problems("synthetic", "train", limit=5)
    assert len(test) == 5 and len(train) == 5
    assert all(isinstance(p, Problem) for p in test + train)
    assert {p.question for p in test}.isdisjoint({p.question for p in train})
    assert load_problems("synthetic", "test", limit=5) == test  # deterministic
    assert len(load_problems("synthetic", "test")) == 500


def test_synthetic_missing_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rftlab.tasks.synthetic", None)
    with pytest.raises(DataError, match="synthetic"):
        load_problems("synthetic", "test")
