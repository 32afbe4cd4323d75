"""The verifier: extraction per format, equivalence, reference normalization, robustness, threads."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rftlab import rewards
from rftlab.errors import ConfigError
from rftlab.rewards import extract_answer, is_correct, is_equivalent, last_boxed, reference_answer, score

# ------------------------------------------------------------------------------------------ extraction

AUTO_CASES = [
    ("Janet sells 9 eggs.\n#### 18", "18"),
    ("#### 1,000", "1000"),
    ("#### $5", "5"),
    ("#### \\$5", "5"),
    ("#### 18 dollars", "18"),
    ("#### 18.", "18"),
    ("#### -3", "-3"),
    ("first try\n#### 17\nno wait\n#### 18", "18"),
    ("#### 18\nthen an empty marker\n####", "18"),
    ("#### \\frac{1}{2}", "\\frac{1}{2}"),
    ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("\\boxed{\\boxed{5}}", "5"),
    ("\\boxed{5} and then \\boxed{", "5"),
    ("\\boxed{3} then \\boxed{}", "3"),
    ("\\fbox{7}", "7"),
    ("\\boxed 9", "9"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("The answer is 42.", "42"),
    ("**Answer:** 42", "42"),
    ("Answer:\n  12", "12"),
    ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
    ("The answer is $\\$32,\\!348$.", "\\$32,\\!348"),
    ("The answer is 18 eggs, as computed.", "18"),
    ("The answer is 1/2", "1/2"),
    ("Final Answer: The largest $n$ is 34.", "34"),  # a sentence after "Answer:": what follows "is"
    ("**Final Answer:** The smallest possible value is $\\frac{1}{2}$.", "\\frac{1}{2}"),
]


@pytest.mark.parametrize(("response", "expected"), AUTO_CASES)
def test_auto_extraction(response: str, expected: str) -> None:
    assert extract_answer(response, "auto") == expected


STRICT_CASES = [
    ("#### 18", "18"),
    ("####18", "18"),
    ("#### 1,234.5", "1234.5"),
    ("#### $7 per day", "7"),
    ("#### 5\n#### 7", "7"),
    ("#### 5\n#### x", "5"),  # the last marker *with a number* counts (as in verl)
    ("\\boxed{18}", None),
    ("The answer is 18", None),
    ("#### x", None),
    ("####", None),
    ("# 18", None),
]


@pytest.mark.parametrize(("response", "expected"), STRICT_CASES)
def test_gsm8k_strict_extraction(response: str, expected: str | None) -> None:
    assert extract_answer(response, "gsm8k_strict") == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("#### 18", None),
        ("\\boxed{a}\\boxed{b}", "b"),
        ("\\boxed{x^{2}}", "x^{2}"),
        ("The answer is 3", None),
        ("within \\boxed{}", None),
    ],
)
def test_boxed_extraction(response: str, expected: str | None) -> None:
    assert extract_answer(response, "boxed") == expected


def test_last_number_only_when_allowed() -> None:
    text = "I think it is 41, then 42 apples"
    assert extract_answer(text) is None
    assert extract_answer(text, allow_last_number=True) == "42"
    assert score(text, "42") is False
    assert score(text, "42", allow_last_number=True) is True


def test_last_boxed_is_balanced_and_skips_escaped_braces() -> None:
    assert last_boxed("\\boxed{\\frac{a}{b}} x") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{\\{ \\}") is None  # the escaped brace does not close the box
    assert last_boxed("no box here") is None


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gsm8k_strict"):
        extract_answer("#### 1", "strict")
    with pytest.raises(ConfigError):
        score("#### 1", "1", "latex")


# ------------------------------------------------------------------------------------------ strict vs auto


@pytest.mark.parametrize(
    ("response", "auto", "strict", "boxed"),
    [
        ("\\boxed{18}", True, False, True),
        ("The answer is 18", True, False, False),
        ("#### 18", True, True, False),
        ("#### 18\n\\boxed{17}", True, True, False),  # auto prefers ####, boxed mode sees only the box
        ("\\boxed{17} #### 18", True, True, False),
    ],
)
def test_formats_differ(response: str, auto: bool, strict: bool, boxed: bool) -> None:
    assert score(response, "18", "auto") is auto
    assert score(response, "18", "gsm8k_strict") is strict
    assert score(response, "18", "boxed") is boxed


# ------------------------------------------------------------------------------------------ equivalence

EQUAL = [
    ("1,000", "1000"),
    ("$5", "5"),
    ("\\$5", "5"),
    ("5.0", "5"),
    ("5.00", "5"),
    ("1/2", "0.5"),
    ("\\frac{1}{2}", "0.5"),
    ("\\dfrac12", "1/2"),
    ("\\tfrac{1}{2}", "\\frac12"),
    ("-\\frac{1}{2}", "-0.5"),
    ("\\frac{-1}{2}", "-1/2"),
    ("50%", "50"),
    ("50\\%", "50"),
    ("18.", "18"),
    ("5 dollars", "5"),
    ("5\\text{ cm}", "5"),
    ("30^\\circ", "30"),
    ("30^{\\circ}", "30"),
    ("$18$", "18"),
    ("+7", "7"),
    ("\u22127", "-7"),
    (".5", "0.5"),
    ("p-q", "p - q"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
]


@pytest.mark.parametrize(("pred", "ref"), EQUAL)
def test_fast_path_equal(pred: str, ref: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """These never need math-verify: the fast path alone must decide them."""
    monkeypatch.setattr(rewards, "_math_verify_equal", _must_not_be_called)
    assert is_equivalent(pred, ref)


NOT_EQUAL = [
    ("17", "18"),
    ("0.33", "\\frac13"),
    ("1/2", "2"),
    ("5", "50"),
    ("-5", "5"),
    ("1/0", "0"),
    ("18.5", "18"),
    ("10 pi", "10"),
]


@pytest.mark.parametrize(("pred", "ref"), NOT_EQUAL)
def test_not_equal(pred: str, ref: str) -> None:
    assert not is_equivalent(pred, ref)


@pytest.mark.parametrize(
    ("pred", "ref"),
    [
        ("2\\sqrt{3}", "\\sqrt{12}"),
        ("1+x^2", "x^2+1"),
        ("Evelyn", "\\text{Evelyn}"),
        ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("[1, 2)", "[1,2)"),
        ("2^{10}", "1024"),
    ],
)
def test_math_verify_equal(pred: str, ref: str) -> None:
    assert is_equivalent(pred, ref)


@pytest.mark.parametrize(("pred", "ref"), [("2\\sqrt{2}", "\\sqrt{12}"), ("x^2-1", "x^2+1"), ("[1,2]", "[1,2)")])
def test_math_verify_not_equal(pred: str, ref: str) -> None:
    assert not is_equivalent(pred, ref)


# Misses found against other projects' verifier test suites (issue 9, "Verifier accuracy").
FIXED_FAST = [
    ("4 4/9", "40/9"),  # mixed numbers
    ("4\\frac{4}{9}", "40/9"),
    ("4\\frac{4}{9}", "4 4/9"),
    ("1\\frac{4}{5}", "\\frac95"),  # MATH-500 references write mixed numbers like this
    ("137 \\frac{1}{2}", "137.5"),
    ("-1 1/2", "-1.5"),
    ("32,\\! 349", "32349"),  # a thousands separator `,\!` followed by a space
    ("32,\\! 349", "32,\\!349"),
    ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
    ("\\$32,\\! 348", "32,348"),
    ("\\sqrt[3]2", "\\sqrt[3]{2}"),  # a bare radicand
    ("\\sqrt2", "\\sqrt{2}"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),  # a row separator
    ("x\\ +\\ 1", "x+1"),  # `\ ` is still a space
]


@pytest.mark.parametrize(("pred", "ref"), FIXED_FAST)
def test_fixed_misses_are_decided_by_the_fast_path(pred: str, ref: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rewards, "_math_verify_equal", _must_not_be_called)
    assert is_equivalent(pred, ref)
    assert is_equivalent(ref, pred)


@pytest.mark.parametrize(
    ("pred", "ref"),
    [
        ("4 4/9", "16/9"),  # not a product
        ("4 4/9", "44/9"),
        ("1, 234", "1234"),  # a tuple, not a thousands separator (no `\!`)
        ("\\sqrt[3]2", "\\sqrt{2}"),
        ("\\sqrt[3]23", "\\sqrt[3]{23}"),  # only one character is a bare radicand: 3 * cbrt(2)
        ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}"),
    ],
)
def test_fixed_misses_do_not_accept_wrong_answers(pred: str, ref: str) -> None:
    assert not is_equivalent(pred, ref)
    assert not is_equivalent(ref, pred)


def test_fixed_misses_that_need_math_verify() -> None:
    assert is_equivalent("2\\sqrt[3]2", "\\sqrt[3]{16}")
    assert is_equivalent("\\begin{pmatrix} 1/2 \\\\ 3 \\end{pmatrix}", "\\begin{pmatrix}\\frac12\\\\3\\end{pmatrix}")


def _math500_vector_answers() -> list[tuple[str, str, str]]:
    """(id, bare answer, full solution) of every MATH-500 answer that is a vector or matrix."""
    from rftlab.tasks import load_problems

    found = []
    for p in load_problems("math500", "test"):
        if "\\\\" in p.answer:
            found.append((p.id, p.answer, p.metadata.get("solution", p.answer)))
    return found


def test_every_math500_vector_answer_matches_itself_respaced() -> None:
    vectors = _math500_vector_answers()
    assert len(vectors) == 7, [v[0] for v in vectors]  # the 7 of issue 9
    for id_, answer, solution in vectors:
        compact = re.sub(r"\s+", "", answer)  # `\begin{pmatrix}-2\\-14\\-7\end{pmatrix}`
        wide = answer.replace("\\\\", "  \\\\\n  ").replace("&", " & ")
        for variant in (compact, wide):
            assert is_correct(f"so \\boxed{{{variant}}}", solution), (id_, variant)
            assert is_correct(f"so \\boxed{{{variant}}}", answer), (id_, variant)
        wrong = compact.replace("\\end", "+1\\end", 1)  # the last entry changed
        assert not is_correct(f"so \\boxed{{{wrong}}}", solution), (id_, wrong)


def _must_not_be_called(*args: object) -> bool:
    raise AssertionError("math-verify was called on a fast-path case")


# ------------------------------------------------------------------------------------------ references


@pytest.mark.parametrize(
    ("reference", "bare"),
    [
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n#### 18", "18"),
        ("She pays 1,000 in all.\n#### 1,000", "1000"),
        ("so $\\boxed{\\frac{1}{2}}$.The answer is: \\frac12", "\\frac{1}{2}"),
        ("  \\frac{1}{2} ", "\\frac{1}{2}"),
        ("18", "18"),
    ],
)
def test_reference_answer(reference: str, bare: str) -> None:
    assert reference_answer(reference) == bare


def test_is_correct_normalizes_full_solutions() -> None:
    gsm = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18"
    math = "We get $\\boxed{p - q}$.The answer is: p - q"
    assert is_correct("... so she makes\n#### 18", gsm)
    assert is_correct("The answer is $18$.", gsm)
    assert not is_correct("#### 16", gsm)
    assert is_correct("Thus \\boxed{p-q}", math)
    assert not is_correct("Thus \\boxed{q-p}", math)
    assert is_correct("#### 1000", "total\n#### 1,000")
    assert not is_correct("18", "18")  # no answer marker in the response: auto finds nothing


# ------------------------------------------------------------------------------------------ garbage

GARBAGE = [
    "",
    " ",
    "\\boxed{",
    "\\boxed{{{{{{",
    "}}}}}}\\boxed}",
    "####",
    "#### ",
    "#### \n\n",
    "\\boxed{" * 5000,
    "{" * 100_000,
    "a" * 1_000_000,
    "#" * 100_000,
    "####" * 10_000,
    "\\" * 100_000,
    "$" * 10_000,
    "\\boxed{1}" * 20_000,
    "\\boxed{nan}",
    "\\boxed{NaN}",
    "\\boxed{inf}",
    "\\boxed{-\\infty}",
    "\\boxed{10^{10000}}",
    "\\boxed{\\frac{1}{0}}",
    "#### 1e999",
    "#### " + "9" * 5000,
    "\x00\x01\x02 #### \x00",
    "\ud800\udfff lone surrogates \\boxed{\ud800}",
    "🤖🤖 #### 🤖 \\boxed{🤖}",
    "The answer is",
    "Answer:",
    "\\boxed{\\boxed{\\boxed{}}}",
    "\\boxed{\\left( \\right.}",
    "\\boxed{)(}",
    "\\fbox",
]


@pytest.mark.parametrize("response", GARBAGE, ids=range(len(GARBAGE)))
@pytest.mark.parametrize("answer_format", ["auto", "gsm8k_strict", "boxed"])
def test_garbage_scores_false_without_raising(response: str, answer_format: str) -> None:
    assert score(response, "5", answer_format) is False
    extract_answer(response, answer_format)  # never raises


@pytest.mark.parametrize("bad", [None, 5, b"#### 5", ["#### 5"]])
def test_non_strings_score_false(bad: object) -> None:
    assert score(bad, "5") is False  # type: ignore[arg-type]
    assert is_correct(bad, "5") is False  # type: ignore[arg-type]
    assert score("#### 5", bad) is False  # type: ignore[arg-type]
    assert extract_answer(bad) is None  # type: ignore[arg-type]


HUGE = ["x" * 2_000_000 + "#### 5", "\\boxed{" * 200_000, "1," * 500_000, "answer: " * 100_000, "#### " * 400_000]
SCANS = ("_strict_gsm8k", "last_boxed", "_after_hashes", "_after_answer_phrase", "_last_number")


@pytest.mark.parametrize("answer_format", ["auto", "gsm8k_strict", "boxed"])
@pytest.mark.parametrize("response", HUGE, ids=range(len(HUGE)))
def test_huge_inputs_take_the_bounded_paths(monkeypatch: pytest.MonkeyPatch, response: str, answer_format: str) -> None:
    """Bounded by construction, not by a stopwatch (which machine load breaks): math-verify is never
    reached, every scan of the response sees at most its last MAX_RESPONSE_CHARS characters, and at most
    _MAX_TRIES `####` / box candidates are examined, however many the response holds."""
    monkeypatch.setattr(rewards, "_math_verify_equal", _must_not_be_called)
    scanned, candidates = [], []
    for name in SCANS:
        monkeypatch.setattr(rewards, name, _recording(getattr(rewards, name), scanned))
    monkeypatch.setattr(rewards, "_box_span", _recording(rewards._box_span, candidates))
    monkeypatch.setattr(rewards, "_refine", _recording(rewards._refine, candidates))
    assert score(response, "5", answer_format) is (response.endswith("#### 5") and answer_format != "boxed")
    assert scanned and max(scanned) <= rewards.MAX_RESPONSE_CHARS
    assert len(candidates) <= 2 * rewards._MAX_TRIES + 4  # tries plus the answer's own normalization


def _recording(fn, lengths: list[int]):
    """`fn`, noting the length of its first (text) argument on every call."""

    def wrapped(text, *args, **kwargs):
        lengths.append(len(text))
        return fn(text, *args, **kwargs)

    return wrapped


def test_long_answers_skip_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rewards, "_math_verify_equal", _must_not_be_called)
    long = "x+" * rewards.MAX_ANSWER_CHARS
    assert not is_equivalent(long, "x")
    assert is_equivalent(long, long)  # identical strings are still equal
    assert not is_equivalent(long + "1", long + "2")  # equal prefixes are not enough


# ------------------------------------------------------------------------------------------ threads
# (time bounds, the worker pool and the verdict cache are tested in tests/test_verifier_pool.py)


OFF_THREAD_CASES = [
    ("#### 1,000", "1000", True),
    ("\\boxed{\\dfrac12}", "0.5", True),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}", True),
    ("\\boxed{x^2-1}", "x^2+1", False),
    ("The answer is $\\frac{\\pi}{2}$", "\\frac{\\pi}{2}", True),
    ("\\boxed{Evelyn}", "\\text{Evelyn}", True),
    ("#### 17", "18", False),
    ("garbage {{{", "5", False),
]


def test_score_off_the_main_thread() -> None:
    expected = [want for _, _, want in OFF_THREAD_CASES]
    with ThreadPoolExecutor(max_workers=4) as ex:
        got = list(ex.map(lambda c: score(c[0], c[1]), OFF_THREAD_CASES * 3))
    assert got == expected * 3

    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(is_correct("\\boxed{p-q}", "\\boxed{p - q}")))
    thread.start()
    thread.join(30)
    assert results == [True]
