"""Synthetic arithmetic word problems in GSM8K's format, and the pretraining texts of the `tiny` model.

A problem is a chain: a start amount, then 1..k steps, each applying one operation (`+`, `-`, `*`)
with a small operand, told as sentences of one *template* (a scenario: a shop, money, a bus, a
library, a farm). The reference solution is written the GSM8K way, one step a line with a
calculator annotation, and ends with the answer line::

    After buying 7 more, Tom has 12+7=<<12+7=19>>19 apples.
    After giving away 5, Tom has 19-5=<<19-5=14>>14 apples.
    #### 14

Difficulty knobs (all real parameters of `generate_problems`): the number of steps, the range of
the numbers (`max_value` for the start amount and operands, `max_result` for every intermediate
result, `max_factor` for `*`), the operations and the templates.

Train and test never overlap: every question is assigned to a split by hashing its text
(`split_of`), so the test problems of any seed are, by construction, never in the pretraining
corpus (which draws only `split="train"` problems).

`generate_pretraining_texts` renders train problems into responses in several ways, so that a
model pretrained on them answers in several formats (only `#### N` earns the strict GSM8K reward)
and sometimes reasons wrongly (an arithmetic slip or a skipped step).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from rftlab.tasks.problem import Problem

OPS = ("+", "-", "*")
TEST_FRACTION = 0.1  # share of the question space that is held out (hash of the question text)


# ---------------------------------------------------------------------------------------------
# templates: how a scenario tells its start, each operation, the question and a solution step
# ---------------------------------------------------------------------------------------------

_NAMES = [
    ("Tom", "he"),
    ("Anna", "she"),
    ("Ben", "he"),
    ("Mia", "she"),
    ("Sam", "he"),
    ("Lily", "she"),
    ("Max", "he"),
    ("Emma", "she"),
    ("Leo", "he"),
    ("Zoe", "she"),
    ("Jack", "he"),
    ("Ava", "she"),
]


@dataclass(frozen=True)
class Template:
    """One scenario. Placeholders: {name} {pron} {Pron} {item} {n} (operand)."""

    name: str
    items: tuple[str, ...]
    start: str
    steps: dict[str, str]  # op -> sentence in the question
    solution_steps: dict[str, str]  # op -> prefix of the solution line, before "{who} has {expr}"
    who: str  # the subject of solution lines ("{name}", "The bus")
    has: str  # verb after `who` ("has", "now has")
    question: str
    total_phrase: str  # "So {who} has {n} {item}." style closing sentence


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in [
        Template(
            name="shop",
            items=("apples", "stickers", "marbles", "pencils", "cookies", "cards"),
            start="{name} has {n} {item}.",
            steps={
                "+": "{Pron} buys {n} more {item}.",
                "-": "{Pron} gives away {n} {item}.",
                "*": "Then the number of {item} {pron} has becomes {n} times as large.",
            },
            solution_steps={
                "+": "After buying {n} more, ",
                "-": "After giving away {n}, ",
                "*": "After it becomes {n} times as large, ",
            },
            who="{name}",
            has="has",
            question="How many {item} does {name} have now?",
            total_phrase="So {name} has {n} {item} now.",
        ),
        Template(
            name="money",
            items=("dollars",),
            start="{name} has {n} dollars.",
            steps={
                "+": "{Pron} earns {n} dollars.",
                "-": "{Pron} spends {n} dollars.",
                "*": "Then the money {pron} has becomes {n} times as large.",
            },
            solution_steps={
                "+": "After earning {n}, ",
                "-": "After spending {n}, ",
                "*": "After making it {n} times as much, ",
            },
            who="{name}",
            has="has",
            question="How many dollars does {name} have now?",
            total_phrase="So {name} has {n} dollars now.",
        ),
        Template(
            name="bus",
            items=("passengers",),
            start="A bus has {n} passengers.",
            steps={
                "+": "At the next stop, {n} people get on.",
                "-": "At the next stop, {n} people get off.",
                "*": "Then the number of passengers becomes {n} times as large.",
            },
            solution_steps={
                "+": "After {n} get on, ",
                "-": "After {n} get off, ",
                "*": "After it becomes {n} times as large, ",
            },
            who="the bus",
            has="has",
            question="How many passengers are on the bus now?",
            total_phrase="So there are {n} passengers on the bus now.",
        ),
        Template(
            name="library",
            items=("books",),
            start="A library has {n} books.",
            steps={
                "+": "It buys {n} new books.",
                "-": "It gives {n} old books away.",
                "*": "Then its number of books becomes {n} times as large.",
            },
            solution_steps={
                "+": "After buying {n} new books, ",
                "-": "After giving {n} away, ",
                "*": "After it becomes {n} times as large, ",
            },
            who="the library",
            has="has",
            question="How many books does the library have now?",
            total_phrase="So the library has {n} books now.",
        ),
        Template(
            name="farm",
            items=("chickens", "cows", "sheep", "goats"),
            start="A farm has {n} {item}.",
            steps={
                "+": "The farmer buys {n} more {item}.",
                "-": "The farmer sells {n} {item}.",
                "*": "Then the number of {item} becomes {n} times as large.",
            },
            solution_steps={
                "+": "After buying {n} more, ",
                "-": "After selling {n}, ",
                "*": "After it becomes {n} times as large, ",
            },
            who="the farm",
            has="has",
            question="How many {item} does the farm have now?",
            total_phrase="So the farm has {n} {item} now.",
        ),
    ]
}

DEFAULT_TEMPLATES = ("shop", "money", "bus", "library")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# ---------------------------------------------------------------------------------------------
# problems
# ---------------------------------------------------------------------------------------------


def split_of(question: str, test_fraction: float = TEST_FRACTION) -> str:
    """'test' or 'train', a pure function of the question text (sha256), the same on every machine."""
    h = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big")
    return "test" if h / 2**64 < test_fraction else "train"


@dataclass(frozen=True)
class _Chain:
    template: str
    name: str
    pron: str
    item: str
    start: int
    steps: tuple[tuple[str, int], ...]  # (op, operand)

    def values(self) -> list[int]:
        """Start value, then the value after each step."""
        vals = [self.start]
        for op, n in self.steps:
            vals.append(_apply(vals[-1], op, n))
        return vals


def _apply(x: int, op: str, n: int) -> int:
    return x + n if op == "+" else x - n if op == "-" else x * n


def _sample_chain(
    rng: random.Random,
    *,
    min_steps: int,
    max_steps: int,
    max_value: int,
    max_result: int,
    max_factor: int,
    ops: Sequence[str],
    templates: Sequence[str],
) -> _Chain:
    tname = rng.choice(list(templates))
    t = TEMPLATES[tname]
    name, pron = rng.choice(_NAMES)
    item = rng.choice(t.items)
    k = rng.randint(min_steps, max_steps)
    while True:  # rejection sampling: every operation must be possible at the current value
        start = x = rng.randint(2, max_value)
        steps: list[tuple[str, int]] = []
        for _ in range(k):
            choices = [op for op in ops if _op_possible(op, x, max_result, max_factor)]
            if not choices:
                break
            op = rng.choice(choices)
            if op == "+":
                n = rng.randint(1, min(max_value, max_result - x))
            elif op == "-":
                n = rng.randint(1, min(max_value, x - 1))
            else:
                n = rng.randint(2, min(max_factor, max_result // x))
            steps.append((op, n))
            x = _apply(x, op, n)
        if len(steps) == k:
            return _Chain(tname, name, pron, item, start, tuple(steps))


def _op_possible(op: str, x: int, max_result: int, max_factor: int) -> bool:
    if op == "+":
        return max_result - x >= 1
    if op == "-":
        return x >= 2
    if op == "*":
        return max_factor >= 2 and x * 2 <= max_result
    raise ValueError(f"unknown operation {op!r}; valid: {OPS}")


def _fill(s: str, c: _Chain, n: int | None = None) -> str:
    return s.format(name=c.name, pron=c.pron, Pron=_cap(c.pron), item=c.item, n=n)


def _question(c: _Chain) -> str:
    t = TEMPLATES[c.template]
    parts = [_fill(t.start, c, c.start)]
    parts += [_fill(t.steps[op], c, n) for op, n in c.steps]
    parts.append(_fill(t.question, c))
    return " ".join(parts)


def _solution(c: _Chain, values: list[int] | None = None, *, annotate: bool = True) -> list[str]:
    """GSM8K-style step lines (without the answer line). `values` may differ from the truth (slips)."""
    t = TEMPLATES[c.template]
    vals = values or c.values()
    lines = []
    for i, (op, n) in enumerate(c.steps):
        a, r = vals[i], vals[i + 1]
        expr = f"{a}{op}{n}=<<{a}{op}{n}={r}>>{r}" if annotate else f"{a} {op} {n} = {r}"
        lead = _fill(t.solution_steps[op], c, n)
        lines.append(f"{lead}{_fill(t.who, c)} {t.has} {expr} {c.item}.")
    return lines


def generate_problems(
    n: int,
    seed: int,
    *,
    split: str = "test",
    min_steps: int = 1,
    max_steps: int = 2,
    max_value: int = 12,
    max_result: int = 25,
    max_factor: int = 5,
    ops: Sequence[str] = ("+", "-"),
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    test_fraction: float = TEST_FRACTION,
) -> list[Problem]:
    """`n` distinct problems of `split` ('test', 'train' or 'all'), deterministic for `seed`.

    The defaults are the distribution the built-in `tiny` model is pretrained on (its train half).
    Knobs: `min_steps..max_steps` steps; start and operands in [2, max_value] / [1, max_value];
    every intermediate result in [1, max_result]; `*` multiplies by 2..max_factor; `ops` a
    subset of OPS; `templates` a subset of TEMPLATES. `split="test"` (the default) gives problems
    never seen in pretraining, whatever the seed.
    """
    _check_knobs(min_steps, max_steps, max_value, max_result, ops, templates, split)
    rng = random.Random(f"rftlab.synthetic:{seed}")
    seen: set[str] = set()
    out: list[Problem] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise ValueError(f"could only draw {len(out)} distinct {split} problems of {n}; widen the knobs")
        c = _sample_chain(
            rng,
            min_steps=min_steps,
            max_steps=max_steps,
            max_value=max_value,
            max_result=max_result,
            max_factor=max_factor,
            ops=ops,
            templates=templates,
        )
        q = _question(c)
        if q in seen or (split != "all" and split_of(q, test_fraction) != split):
            continue
        seen.add(q)
        out.append(_to_problem(c, q, seed, len(out)))
    return out


def _to_problem(c: _Chain, q: str, seed: int, index: int) -> Problem:
    answer = c.values()[-1]
    solution = "\n".join(_solution(c) + [f"#### {answer}"])
    qid = hashlib.sha256(q.encode()).hexdigest()[:10]
    return Problem(
        id=f"synthetic-{qid}",
        question=q,
        answer=str(answer),
        source="synthetic",
        prompt_style="gsm8k",
        metadata={
            "solution": solution,
            "steps": len(c.steps),
            "ops": [op for op, _ in c.steps],
            "template": c.template,
            "max_intermediate": max(c.values()),
            "seed": seed,
            "index": index,
            "split": split_of(q),
        },
    )


def _check_knobs(min_steps, max_steps, max_value, max_result, ops, templates, split) -> None:
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    if max_value < 2 or max_result < max_value:
        raise ValueError(f"need 2 <= max_value <= max_result, got {max_value}, {max_result}")
    bad = [op for op in ops if op not in OPS]
    if bad or not ops:
        raise ValueError(f"unknown operations {bad}; valid: {OPS}")
    badt = [t for t in templates if t not in TEMPLATES]
    if badt or not templates:
        raise ValueError(f"unknown templates {badt}; valid: {sorted(TEMPLATES)}")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")


# ---------------------------------------------------------------------------------------------
# pretraining texts: the same problems answered in several ways, some of them wrong
# ---------------------------------------------------------------------------------------------

# answer-line formats and their default shares; only "hash" earns the strict GSM8K reward
ANSWER_FORMATS: dict[str, str] = {
    "hash": "#### {n}",
    "the_answer_is": "The answer is {n}.",
    "answer_colon": "Answer: {n}",
    "total": "{total}",
    "boxed": "\\boxed{{{n}}}",
}
DEFAULT_FORMAT_WEIGHTS = {
    "hash": 0.3,
    "the_answer_is": 0.2,
    "answer_colon": 0.2,
    "total": 0.15,
    "boxed": 0.15,
}
# reasoning styles: GSM8K lines with <<>> annotations, plain "a + b = c" lines, terse equations only
DEFAULT_STYLE_WEIGHTS = {"gsm8k": 0.6, "plain": 0.25, "terse": 0.15}
# errors: an arithmetic slip in one step (propagated), or a skipped step
DEFAULT_ERROR_WEIGHTS = {"none": 0.88, "slip": 0.07, "skip": 0.05}


@dataclass(frozen=True)
class PretrainingSample:
    """One pretraining pair: the problem, the response text (without eos) and how it was made."""

    problem: Problem
    response: str
    answer_format: str
    style: str
    error: str
    final: int  # the number the response ends with (== answer unless error != "none")


def render_response(
    problem: Problem,
    rng: random.Random,
    *,
    answer_format: str,
    style: str,
    error: str,
) -> tuple[str, int]:
    """A response to a synthetic `problem` in one answer format / reasoning style, possibly wrong."""
    c: _Chain = problem.metadata["_chain"]
    steps = list(c.steps)
    if error == "skip" and len(steps) >= 2:
        drop = rng.randrange(len(steps))
        skipped = steps[:drop] + steps[drop + 1 :]
        if min(_Chain(c.template, c.name, c.pron, c.item, c.start, tuple(skipped)).values()) >= 0:
            steps = skipped
    vals = _Chain(c.template, c.name, c.pron, c.item, c.start, tuple(steps)).values()
    if error == "slip" or (error == "skip" and len(steps) == len(c.steps)):  # a skip that can't be: slip
        i = rng.randrange(1, len(vals))
        delta = rng.choice([-10, -2, -1, 1, 2, 10])
        wrong = _propagate(vals[:i] + [vals[i] + delta], steps[i:])
        if delta < 0 and min(wrong) < 0:  # below zero somewhere: slip upwards instead
            wrong = _propagate(vals[:i] + [vals[i] - delta], steps[i:])
        vals = wrong
    c2 = _Chain(c.template, c.name, c.pron, c.item, c.start, tuple(steps))
    final = vals[-1]
    if style == "terse":
        lines = [f"{vals[i]}{op}{n}={vals[i + 1]}" for i, (op, n) in enumerate(steps)]
    else:
        lines = _solution(c2, vals, annotate=(style == "gsm8k"))
    t = TEMPLATES[c.template]
    total = _cap(t.total_phrase.format(name=c.name, item=c.item, n=final))
    lines.append(ANSWER_FORMATS[answer_format].format(n=final, total=total))
    return "\n".join(lines), final


def _propagate(vals: list[int], steps: list[tuple[str, int]]) -> list[int]:
    """Extend `vals` by applying the remaining `steps` to its last value."""
    vals = list(vals)
    for op, n in steps:
        vals.append(_apply(vals[-1], op, n))
    return vals


def generate_pretraining_samples(
    n: int,
    seed: int,
    *,
    format_weights: dict[str, float] | None = None,
    style_weights: dict[str, float] | None = None,
    error_weights: dict[str, float] | None = None,
    **problem_knobs,
) -> list[PretrainingSample]:
    """`n` train-split problems (repeats allowed) each answered in a randomly drawn way.

    Never contains a test-split question. `problem_knobs` are those of `generate_problems`.
    """
    fw = format_weights or DEFAULT_FORMAT_WEIGHTS
    sw = style_weights or DEFAULT_STYLE_WEIGHTS
    ew = error_weights or DEFAULT_ERROR_WEIGHTS
    knobs = dict(
        min_steps=1,
        max_steps=2,
        max_value=12,
        max_result=25,
        max_factor=5,
        ops=("+", "-"),
        templates=DEFAULT_TEMPLATES,
    )
    knobs.update(problem_knobs)
    test_fraction = knobs.pop("test_fraction", TEST_FRACTION)
    _check_knobs(
        knobs["min_steps"],
        knobs["max_steps"],
        knobs["max_value"],
        knobs["max_result"],
        knobs["ops"],
        knobs["templates"],
        "train",
    )
    rng = random.Random(f"rftlab.synthetic.pretrain:{seed}")
    out: list[PretrainingSample] = []
    while len(out) < n:
        c = _sample_chain(rng, **knobs)
        q = _question(c)
        if split_of(q, test_fraction) != "train":
            continue
        p = _to_problem(c, q, seed, len(out))
        p.metadata["_chain"] = c
        fmt = _draw(rng, fw)
        style = _draw(rng, sw)
        err = _draw(rng, ew)
        text, final = render_response(p, rng, answer_format=fmt, style=style, error=err)
        del p.metadata["_chain"]
        out.append(PretrainingSample(p, text, fmt, style, err, final))
    return out


def generate_pretraining_texts(n: int, seed: int, **kwargs) -> list[tuple[str, str]]:
    """(user message, response) pairs for pretraining; see `generate_pretraining_samples`."""
    return [(s.problem.user_message(), s.response) for s in generate_pretraining_samples(n, seed, **kwargs)]


def _draw(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]
