"""Pass@1 = format rate x accuracy among well-formed answers, on hand-made responses."""

from __future__ import annotations

import random

import pytest

from rftlab.evaluation import decomposition_row, score_responses, wilson_interval


def test_decomposition_on_hand_made_gsm8k_responses():
    # problem 0 (answer 5): right; well formed but wrong. problem 1 (answer 12): garbage; right.
    texts = ["2 + 3 = 5\n#### 5", "#### 6", "\x00\ufffd }{ ####", "so 12\n#### 12"]
    result = score_responses(texts, [0, 0, 1, 1], ["5", "12"], "gsm8k_strict", n=2)
    assert result.correct == [1, 1] and result.formatted == 3 and result.responses == 4
    assert result.pass_at_1 == 0.5 and result.format_rate == 0.75
    assert result.accuracy_given_format == pytest.approx(2 / 3)
    assert result.format_rate * result.accuracy_given_format == pytest.approx(result.pass_at_1)
    row = decomposition_row("test", result)
    assert row["test/accuracy_given_format"] == pytest.approx(2 / 3)
    assert (row["test/format_rate_low"], row["test/format_rate_high"]) == wilson_interval(3, 4)  # over 4 responses
    assert (row["test/accuracy_given_format_low"], row["test/accuracy_given_format_high"]) == wilson_interval(2, 3)
    assert row["test/responses"] == 4


def test_a_right_value_without_the_answer_line_is_neither_formatted_nor_correct():
    result = score_responses(["The answer is 5.", "5"], [0, 0], ["5"], "gsm8k_strict", n=2)
    assert (result.correct, result.formatted) == ([0], 0)
    # `auto` extraction (data.answer_format=any) accepts "the answer is": well formed and right
    result = score_responses(["The answer is 5.", "5"], [0, 0], ["5"], "auto", n=2)
    assert (result.correct, result.formatted) == ([1], 1)


def test_boxed_format_counts_a_non_empty_box_whatever_its_value():
    texts = ["\\boxed{\\frac{1}{2}}", "\\boxed{7}", "\\boxed{}", "\\boxed{0.5"]  # right, wrong, empty, unterminated
    result = score_responses(texts, [0, 0, 0, 0], ["\\frac12"], "boxed", n=4)
    assert (result.correct, result.formatted) == ([1], 2)
    assert result.accuracy_given_format == 0.5


def test_garbage_only_gives_format_zero_and_no_accuracy_without_crashing():
    texts = ["", "\x00" * 50, "}" * 10_000 + "{", "#### #### ####", "\ud800 surrogate", "x" * 200_000]
    result = score_responses(texts, [0, 0, 0, 1, 1, 1], ["5", "6"], "gsm8k_strict", n=3)
    assert (result.correct, result.formatted, result.format_rate) == ([0, 0], 0, 0.0)
    assert result.accuracy_given_format is None
    row = decomposition_row("train", result)
    assert row["train/format_rate_low"] == 0.0 and row["train/format_rate_high"] > 0.0
    assert row["train/accuracy_given_format"] is None
    assert row["train/accuracy_given_format_low"] is None and row["train/accuracy_given_format_high"] is None


def test_pass_at_1_is_format_rate_times_accuracy_on_random_mixtures():
    pool = ["#### 5", "#### 4", "five", "\\boxed{5}", "####5", "#### 5.0", "####\n5"]
    rng = random.Random(0)
    for _ in range(50):
        texts = [rng.choice(pool) for _ in range(12)]
        result = score_responses(texts, [i % 3 for i in range(12)], ["5", "5", "4"], "gsm8k_strict", n=4)
        if result.formatted:
            assert result.format_rate * result.accuracy_given_format == pytest.approx(result.pass_at_1)
        else:
            assert result.pass_at_1 == 0.0


def test_decomposition_row_needs_the_formatted_count():
    from rftlab.evaluation import EvalResult

    with pytest.raises(ValueError, match="formatted"):
        decomposition_row("test", EvalResult(n=1, correct=[1], mean_response_tokens=3.0, format_rate=1.0))
