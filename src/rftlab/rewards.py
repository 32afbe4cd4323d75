"""The verifier: pull the final answer out of a response and decide whether it equals the reference.

The paper's rewards (shared/paper/NOTES.md) are binary: GSM8K counts a strict `#### <number>` line,
MATH checks the last `\\boxed{...}` for mathematical equivalence. Here that is two steps:

1. `extract_answer(response, answer_format)` finds the candidate answer string:
   - `gsm8k_strict`: the number right after the last `####` marker (verl's GSM8K reward, except that
     any whitespace, a `$` and thousands commas are allowed between the marker and the number);
   - `boxed`: the content of the last non-empty, brace-balanced `\\boxed{...}` or `\\fbox{...}`;
   - `auto`: the first of `####`, last `\\boxed{}`, "the answer is ..."/"answer: ...", and, only with
     `allow_last_number=True`, the last number in the text.
2. `is_equivalent(pred, reference)` decides equality:
   - a fast exact path for plain numbers, using exact rationals: `1,000` == `1000`, `$5` == `5`,
     `5.0` == `5`, `1/2` == `0.5` == `\\frac{1}{2}` == `\\dfrac12`, a trailing `.` is ignored,
     `50%` == `50` (a percent sign is dropped, not divided by 100: GSM8K references are written
     without it), `30^\\circ` == `30`, and a trailing unit (`5 dollars`, `5\\text{ cm}`) is dropped.
     When both sides are plain numbers this path is final: decimals must be exact (`0.33` is not
     `1/3`), which is what a 0/1 reward on GSM8K wants and keeps the common case cheap;
   - then string equality after light normalization (spaces, `\\left`/`\\right`, `\\dfrac`);
   - then `math_verify` for LaTeX and symbolic answers (`\\sqrt{12}` == `2\\sqrt{3}`, intervals,
     tuples, `\\text{Evelyn}` == `Evelyn`).

The math-verify step runs in warm worker processes (`rftlab.verifier_pool`), bounded by
`timeout_s` seconds of the *worker's CPU time*, not the wall clock, so a verdict is a function of
(answer, reference) only and does not change with machine load. A pair that spends the budget
scores False and is counted (`verifier_timeouts()`, logged by the trainer per round as
`reward/verifier_timeouts`); verdicts are cached per process. Plain-number answers never reach it.

Every function here takes arbitrary model output and never raises on it: garbage, huge strings,
unbalanced braces, unicode, unterminated boxes all score False. Inputs are capped in length
(`MAX_RESPONSE_CHARS`, `MAX_ANSWER_CHARS`) so that pathological strings stay cheap. The only
exception raised is `ConfigError` for an unknown `answer_format`, a programming mistake.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction

from rftlab import verifier_pool
from rftlab.errors import ConfigError

__all__ = [
    "ANSWER_FORMATS",
    "extract_answer",
    "is_correct",
    "is_equivalent",
    "last_boxed",
    "reference_answer",
    "score",
    "verifier_timeouts",
]

log = logging.getLogger(__name__)

ANSWER_FORMATS: tuple[str, ...] = ("auto", "gsm8k_strict", "boxed")

# Final answers sit at the end of a response; scanning only the tail keeps huge outputs cheap.
MAX_RESPONSE_CHARS = 100_000
# CPU seconds a math-verify call may spend in its worker (typical calls take milliseconds; the
# slowest legitimate one measured here, a cold worker's first polynomial identity, ~0.2 s).
MATH_VERIFY_CPU_S = 5.0
# An extracted answer longer than this is compared as a string only, never parsed by math-verify.
MAX_ANSWER_CHARS = 1_000
# How many `####` / `\boxed` occurrences to try, from the last one backwards.
_MAX_TRIES = 20

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_NUM_RE = re.compile(r"[+-]?" + _NUM)
_STRICT_RE = re.compile(r"####[ \t]*(?:\\?\$[ \t]*)?([+-]?" + _NUM + ")")
_BOX_CMD_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_COPULA_RE = re.compile(r"\s(?:is|are|equals)\s+")
_ANSWER_PHRASE_RE = re.compile(r"\banswer(?:[ \t]+is\b|[ \t]*\**[ \t]*[:=][ \t]*\**)[ \t]*:?[ \t]*\**", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# extraction


def last_boxed(text: str) -> str | None:
    """The content of the last non-empty `\\boxed{...}` / `\\fbox{...}` with balanced braces.

    Tries occurrences from the last backwards, so an unterminated `\\boxed{` at the end (a response
    cut by the token limit) or an empty `\\boxed{}` (the prompt's instruction echoed) does not hide an
    earlier complete answer. For nested boxes the innermost last one wins. `\\boxed 5` (no braces)
    gives `5`. Escaped braces `\\{ \\}` do not count as structure.
    """
    if not isinstance(text, str) or "\\" not in text:
        return None
    starts = [m.end() for m in _BOX_CMD_RE.finditer(text)]
    for start in reversed(starts[-_MAX_TRIES:]):
        content = _box_content(text, start)
        if content:
            return content
    return None


def _box_content(text: str, start: int) -> str | None:
    """The argument of a box command whose name ends at `start`; None if unterminated or empty."""
    span = _box_span(text, start)
    if span is None:
        return None
    return text[span[0] : span[1]].strip() or None


def _box_span(text: str, start: int) -> tuple[int, int, int] | None:
    """(content start, content end, end of the whole box) for a box command ending at `start`."""
    i = start
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        m = re.match(r"[^\s${}]+", text[i:])
        return (i, i + m.end(), i + m.end()) if m and i > start else None
    depth = 0
    for m in re.finditer(r"[{}]", text[i:]):
        j = i + m.start()
        if _escaped(text, j):
            continue
        depth += 1 if text[j] == "{" else -1
        if depth == 0:
            return i + 1, j, j + 1
    return None


def _escaped(text: str, j: int) -> bool:
    """True when the character at `j` is preceded by an odd number of backslashes (`\\{`)."""
    n = 0
    while j - n - 1 >= 0 and text[j - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - only the last match is wanted
        pass
    return last


def _strict_gsm8k(text: str) -> str | None:
    """The number after the last `#### N` marker, commas removed (the paper's GSM8K reward)."""
    last = _last_match(_STRICT_RE, text)
    return last.group(1).replace(",", "") if last else None


def _after_hashes(text: str) -> str | None:
    """The refined rest of the line after the last `####` that has something after it."""
    end = len(text)
    for _ in range(_MAX_TRIES):
        pos = text.rfind("####", 0, end)
        if pos < 0:
            return None
        line_end = text.find("\n", pos)
        content = text[pos + 4 : line_end if line_end >= 0 else len(text)].lstrip("#")
        refined = _refine(content)
        if refined:
            return refined
        end = pos
    return None


def _after_answer_phrase(text: str) -> str | None:
    """What follows the last "the answer is" / "answer:" (on the next line if that one is empty)."""
    last = _last_match(_ANSWER_PHRASE_RE, text)
    if last is None:
        return None
    rest = text[last.end() :]
    lines = [ln for ln in rest.split("\n", 2)[:2] if ln.strip()]
    found = _refine(lines[0]) if lines else None
    if found and found[0].isalpha():  # a sentence: `The largest $n$ is 34` -> what follows "is"
        copula = _last_match(_COPULA_RE, found)
        if copula:
            return _refine(found[copula.end() :]) or found
    return found


def _last_number(text: str) -> str | None:
    """The last number in the text, commas removed (a lenient fallback, off by default)."""
    last = _last_match(_NUM_RE, text)
    return last.group(0).replace(",", "") if last else None


def _refine(content: str) -> str | None:
    """Trim a candidate answer taken from running text down to the answer itself.

    Unwraps `$...$`, `\\(...\\)`, `**...**` and `\\boxed{}`, cuts at the end of the sentence, and
    keeps only a leading number when the rest is words (`18 dollars.`, `18 eggs`), so that prose
    after the number does not make a right answer wrong. `1/2` or `3\\sqrt{2}` stay whole.
    """
    s = content.strip().strip("*").strip()
    if s.startswith("="):
        s = s[1:].strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left):
            close = _find_unescaped(s, right, len(left))
            if close > len(left):
                s = s[len(left) : close].strip()
            elif left == "$":
                s = s[1:].strip()  # a currency sign, not math mode
            break
    if _BOX_CMD_RE.match(s):
        return last_boxed(s)
    s = re.split(r"\.(?:\s|$)", s, maxsplit=1)[0].strip()
    num = re.match(r"(?:\\?\$)?\s*([+-]?" + _NUM + ")", s)
    if num:
        rest = s[num.end() :]
        if not rest.strip() or (rest[0] in " \t,;:!)" and not re.search(r"[\d\\^_{}=+*/-]", rest)):
            return num.group(1).replace(",", "")
    s = s.rstrip(".").strip()
    return s or None


def _find_unescaped(s: str, token: str, start: int) -> int:
    """Index of the first `token` at or after `start` not escaped by a backslash (`\\$` is a dollar)."""
    i = s.find(token, start)
    while i >= 0 and _escaped(s, i):
        i = s.find(token, i + 1)
    return i


def extract_answer(response: str, answer_format: str = "auto", *, allow_last_number: bool = False) -> str | None:
    """The candidate final answer in `response`, or None; never raises on any response.

    `gsm8k_strict` is the paper's GSM8K reward (only a `#### N` marker counts, the last one);
    `boxed` the paper's MATH reward (last `\\boxed{}`); `auto` tries `####`, `\\boxed{}`, then
    "the answer is", then (only if `allow_last_number`) the last number, because a lenient reward
    is useful for evaluating models that were not prompted with the paper's suffixes.
    Raises ConfigError only for an unknown `answer_format`.
    """
    _check_format(answer_format)
    try:
        if not isinstance(response, str):
            return None
        text = response[-MAX_RESPONSE_CHARS:]
        if answer_format == "gsm8k_strict":
            return _strict_gsm8k(text)
        if answer_format == "boxed":
            return last_boxed(text)
        for find in (_after_hashes, last_boxed, _after_answer_phrase):
            found = find(text)
            if found:
                return found
        return _last_number(text) if allow_last_number else None
    except Exception:  # noqa: BLE001 - a reward must never crash the trainer on odd text
        log.debug("extract_answer failed", exc_info=True)
        return None


def _check_format(answer_format: str) -> None:
    if answer_format not in ANSWER_FORMATS:
        raise ConfigError(f"answer_format {answer_format!r} is unknown; valid: {', '.join(ANSWER_FORMATS)}")


def reference_answer(reference: str) -> str:
    """The bare reference answer from a bare answer, a GSM8K solution or a MATH solution.

    A GSM8K solution ends with `#### 18` (commas are dropped: `#### 1,000` gives `1000`); a MATH
    solution has its answer in the last `\\boxed{}`; anything else is taken as the answer itself.
    """
    if not isinstance(reference, str):
        return ""
    if "####" in reference:
        found = _strict_gsm8k(reference) or _after_hashes(reference)
        if found:
            return found
    if "\\boxed" in reference or "\\fbox" in reference:
        found = last_boxed(reference)
        if found:
            return found
    return reference.strip()


# ---------------------------------------------------------------------------------------------
# equivalence: the fast path


# A unit after a number: `\text{ cm}` groups, or words (not ones that carry math, like `pi`).
_UNIT_WORD = r"(?!(?:pi|sqrt|root|squared|cubed|times|plus|minus|over|divided|and|or)\b)[A-Za-z]{2,}"
_UNIT_RE = re.compile(
    r"(?:\s*\\(?:text|mbox|mathrm|textbf|textrm)\s*\{[^{}]*\})+$|\s+" + _UNIT_WORD + r"(?:\s+" + _UNIT_WORD + r")*$"
)
_FRAC_RE = re.compile(
    r"([+-]?)\\frac\s*(?:\{\s*([+-]?\d+(?:\.\d+)?)\s*\}|(\d))\s*(?:\{\s*([+-]?\d+(?:\.\d+)?)\s*\}|(\d))"
)
_SLASH_RE = re.compile(r"([+-]?\d+(?:\.\d+)?)\s*/\s*([+-]?\d+(?:\.\d+)?)")
_SIGNED_NUM_RE = re.compile(r"([+-]?)\s*" + _NUM)
# A backslash run of even length (escaped backslashes), then a spacing macro.
_UNESCAPED_SPACING_RE = re.compile(r"(?<!\\)((?:\\\\)*)\\([!,;: ])")
_SQRT_BARE_RE = re.compile(r"\\sqrt\s*(\[[^\[\]]*\])?\s*([0-9A-Za-z])")
# Mixed numbers: `4 4/9`, `4\frac{4}{9}`, `137 \frac12` (a proper fraction after a whole number).
_MIXED_RE = re.compile(
    r"([+-]?)(\d+)(?:\s+(\d+)\s*/\s*(\d+)|\s*\\frac\s*(?:\{\s*(\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d)))"
)


def _light(s: str) -> str:
    """Formatting that never changes the value: math delimiters, spacing macros, `\\dfrac`, `%`."""
    s = s.strip().replace("\u2212", "-").replace("\u00b0", "")
    for _ in range(3):
        before = s
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : -len(right)].strip()
        boxed = _BOX_CMD_RE.match(s)
        span = _box_span(s, boxed.end()) if boxed else None
        if span and span[2] == len(s):
            s = s[span[0] : span[1]].strip()
        if s == before:
            break
    s = re.sub(r"(\d),\s*\\!\s*(?=\d)", r"\1,", s)  # `32,\! 349`: a thousands separator
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", s)
    # spacing macros `\! \, \; \: \ ` -- but not the second backslash of a row separator `\\`
    s = _UNESCAPED_SPACING_RE.sub(lambda m: m.group(1) + (" " if m.group(2) == " " else ""), s)
    s = s.replace("~", " ")
    s = _SQRT_BARE_RE.sub(r"\\sqrt\1{\2}", s)  # `\sqrt[3]2` is `\sqrt[3]{2}`
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", s)
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"^(?:\\\$|\$)\s*", "", s)
    s = re.sub(r"([+-])\s*(?:\\\$|\$)\s*", r"\1", s)
    s = s.strip().rstrip(".").strip()
    return s


def _as_number(s: str) -> Fraction | None:
    """The exact value of a plain number (`1,000`, `-2.5`, `3/4`, `\\frac{1}{2}`, `5 dollars`)."""
    if len(s) > 200:
        return None
    s = _UNIT_RE.sub("", s).strip() or s
    m = _SIGNED_NUM_RE.fullmatch(s)
    if m:
        return Fraction(s.replace(",", "").replace(" ", ""))
    m = _SLASH_RE.fullmatch(s)
    if m:
        return _ratio(m.group(1), m.group(2))
    m = _FRAC_RE.fullmatch(s)
    if m:
        value = _ratio(m.group(2) or m.group(3), m.group(4) or m.group(5))
        return -value if value is not None and m.group(1) == "-" else value
    m = _MIXED_RE.fullmatch(s)
    if m:
        num, den = int(m.group(3) or m.group(5) or m.group(6)), int(m.group(4) or m.group(7) or m.group(8))
        if 0 < num < den:  # only a proper fraction makes a mixed number; `2\frac{3}{2}` is left alone
            value = int(m.group(2)) + Fraction(num, den)
            return -value if m.group(1) == "-" else value
    return None


def _ratio(num: str, den: str) -> Fraction | None:
    d = Fraction(den)
    return Fraction(num) / d if d != 0 else None


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def is_equivalent(pred: str, reference: str, *, timeout_s: float = MATH_VERIFY_CPU_S) -> bool:
    """True when the extracted answer `pred` equals the bare `reference`; never raises.

    Plain numbers are decided exactly and at once; other answers are equal when their normalized
    strings match or math-verify finds them equivalent within `timeout_s` seconds of CPU time.
    """
    try:
        if not isinstance(pred, str) or not isinstance(reference, str):
            return False
        if not pred.strip() or not reference.strip():
            return False
        if len(pred) > MAX_ANSWER_CHARS or len(reference) > MAX_ANSWER_CHARS:
            return _squash(pred) == _squash(reference)  # too long to parse: string equality only
        lp, lr = _light(pred), _light(reference)
        np_, nr = _as_number(lp), _as_number(lr)
        if np_ is not None and nr is not None:
            return np_ == nr
        if not lp or not lr:
            return False
        if _squash(lp) == _squash(lr):
            return True
        return _math_verify_equal(lr, lp, timeout_s)
    except Exception:  # noqa: BLE001 - a reward must never crash the trainer on odd text
        log.debug("is_equivalent failed", exc_info=True)
        return False


# ---------------------------------------------------------------------------------------------
# the rewards


def score(
    response: str,
    reference: str,
    answer_format: str = "auto",
    *,
    timeout_s: float = MATH_VERIFY_CPU_S,
    allow_last_number: bool = False,
) -> bool:
    """The 0/1 reward the trainer uses: does `response` contain the bare `reference` answer?

    `answer_format` picks the extraction (see `extract_answer`); `timeout_s` bounds the math-verify
    step in seconds of its worker's CPU time (so the verdict does not depend on machine load). Works from any thread and never raises on model output; an unknown `answer_format` raises
    ConfigError.
    """
    _check_format(answer_format)
    pred = extract_answer(response, answer_format, allow_last_number=allow_last_number)
    if pred is None:
        return False
    return is_equivalent(pred, reference, timeout_s=timeout_s)


def is_correct(response: str, reference: str) -> bool:
    """Is `response` right? `reference` may be a bare answer or a full GSM8K/MATH solution.

    Uses `auto` extraction, so that any of the usual ways of stating an answer counts.
    """
    return score(response, reference_answer(reference), "auto")


# ---------------------------------------------------------------------------------------------
# math-verify, bounded by a worker's CPU time (rftlab.verifier_pool)


def _math_verify_equal(gold: str, pred: str, timeout_s: float) -> bool:
    """math-verify's verdict within `timeout_s` CPU seconds of a worker, False past it; never raises."""
    return verifier_pool.verify(gold, pred, timeout_s)


def verifier_timeouts() -> int:
    """How many verdicts in this process came from a math-verify timeout (scored False) so far."""
    return verifier_pool.timeouts()
