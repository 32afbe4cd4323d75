"""Tasks: the `Problem` record and the loaders (vendored GSM8K / MATH-500, files, hub, synthetic).

`load_problems(dataset, split)` is the entry point; see `rftlab.tasks.loading` for the datasets it
knows. The synthetic generator is imported only when asked for, so this package imports cheaply.
"""

from rftlab.tasks.loading import LoadResult, SkippedRow, load_options, load_problems, load_problems_result
from rftlab.tasks.problem import PROMPT_SUFFIXES, Problem

__all__ = [
    "PROMPT_SUFFIXES",
    "LoadResult",
    "Problem",
    "SkippedRow",
    "load_options",
    "load_problems",
    "load_problems_result",
]
