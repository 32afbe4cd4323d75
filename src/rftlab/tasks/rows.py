"""One raw data row -> one `Problem`: the GSM8K and MATH row formats.

Kept apart from file handling so that every source (vendored file, user file, hub dataset) turns
rows into problems the same way. A malformed row raises `RowError` naming the field; the loader
adds the file and line.

- GSM8K rows: `question`, and `answer` = the worked solution whose last line is `#### N`.
  `Problem.answer` is N without thousands commas; the solution goes to `metadata["solution"]`.
- MATH rows: `problem` (or `question`), and `solution` and/or `answer`. The final answer is the
  explicit `answer` field when the row has both; otherwise the content of the last `\\boxed{...}`
  (or `\\fbox{...}`, balanced braces) of `solution`, or of `answer` when that holds the worked
  solution (as in the vendored MATH-500). A lone one-line `answer` without a box is taken as the
  bare answer itself (many MATH copies store it so); a multi-line one without a box is malformed.
  `level`, `subject`, `type` and `unique_id` are kept in metadata when present.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from rftlab.rewards import last_boxed
from rftlab.tasks.problem import Problem

FORMATS: tuple[str, ...] = ("gsm8k", "math")
MATH_METADATA_FIELDS: tuple[str, ...] = ("level", "subject", "type", "unique_id")
_GSM8K_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)")


class RowError(ValueError):
    """A row that cannot become a Problem; the message names the field."""


def _text(row: Mapping[str, Any], name: str) -> str:
    """A required, non-empty text field (numbers are accepted and written as text)."""
    if name not in row or row[name] is None:
        raise RowError(f"missing field {name!r}")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowError(f"field {name!r} is a {type(value).__name__}, not text")
    text = str(value).strip()
    if not text:
        raise RowError(f"field {name!r} is empty")
    return text


def gsm8k_final_answer(solution: str) -> str:
    """N from a GSM8K solution's last line `#### N`, commas removed; RowError if there is none."""
    lines = [ln for ln in solution.strip().splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else ""
    if not last.startswith("####"):
        raise RowError("field 'answer' has no final '#### <number>' line")
    number = last[4:].strip().replace(",", "")
    if not _GSM8K_NUMBER.fullmatch(number):
        raise RowError(f"field 'answer': final line {last!r} is not '#### <number>'")
    return number


def gsm8k_row(row: Mapping[str, Any], *, id: str, source: str) -> Problem:
    """A GSM8K row (`question`, `answer` ending `#### N`) as a Problem."""
    question = _text(row, "question")
    solution = _text(row, "answer")
    return Problem(
        id=id,
        question=question,
        answer=gsm8k_final_answer(solution),
        source=source,
        prompt_style="gsm8k",
        metadata={"solution": solution},
    )


def math_row(row: Mapping[str, Any], *, id: str, source: str) -> Problem:
    """A MATH row (`problem`/`question`, `solution` and/or `answer`) as a Problem."""
    question = _text(row, "problem" if "problem" in row else "question")
    solution: str | None = None
    if "solution" in row and "answer" in row:
        solution, answer = _text(row, "solution"), _text(row, "answer")
    elif "solution" in row:
        solution = _text(row, "solution")
        answer = _boxed_or_error(solution, "solution")
    elif "answer" in row:
        text = _text(row, "answer")
        if "\\boxed" in text or "\\fbox" in text or "\n" in text:
            solution, answer = text, _boxed_or_error(text, "answer")
        else:
            answer = text
    else:
        raise RowError("missing field 'solution' (or 'answer')")
    metadata: dict[str, Any] = {k: row[k] for k in MATH_METADATA_FIELDS if row.get(k) is not None}
    if solution is not None:
        metadata["solution"] = solution
    return Problem(id=id, question=question, answer=answer, source=source, prompt_style="math", metadata=metadata)


def _boxed_or_error(text: str, name: str) -> str:
    answer = last_boxed(text)
    if answer is None:
        raise RowError(f"field {name!r} has no \\boxed{{...}} answer")
    return answer


ROW_PARSERS: dict[str, Callable[..., Problem]] = {"gsm8k": gsm8k_row, "math": math_row}


def guess_format(row: Mapping[str, Any]) -> str | None:
    """'gsm8k' or 'math' from a row's fields, or None when they do not tell.

    `problem`/`solution` fields mean MATH; otherwise an `answer` ending in a `####` line means
    GSM8K and one with a `\\boxed{}` means MATH. A bare `question`/`answer` pair is ambiguous.
    """
    if "problem" in row or "solution" in row:
        return "math"
    answer = row.get("answer")
    if isinstance(answer, str):
        if "####" in answer:
            return "gsm8k"
        if "\\boxed" in answer or "\\fbox" in answer:
            return "math"
    return None
