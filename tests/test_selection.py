"""Training-example selection by base Pass@1 bucket."""

import pytest

from rftlab.errors import RftlabError
from rftlab.selection import candidate_pool, in_bucket, select_by_difficulty
from rftlab.tasks.problem import Problem


@pytest.mark.parametrize(
    ("p", "bucket", "inside"),
    [(0.0, "extreme", True), (0.0625, "extreme", False), (0.0, "hard", False), (0.0625, "hard", True),
     (0.1, "hard", False), (0.1, "medium", True), (0.6, "medium", True), (0.625, "medium", False),
     (0.625, "easy", True), (0.9, "easy", True), (0.95, "easy", False), (1.0, "any", True)],
)  # fmt: skip
def test_buckets(p, bucket, inside):
    assert in_bucket(p, bucket) is inside


def problems(n):
    return [Problem(f"p{i}", f"q{i}", "1", "t") for i in range(n)]


def test_pool_is_seeded_and_independent_of_run_seed():
    a, b = candidate_pool(problems(50), 10, seed=0), candidate_pool(problems(50), 10, seed=0)
    assert a == b and len(a) == 10 and len({p.id for p in a}) == 10
    assert candidate_pool(problems(50), 10, seed=1) != a


def test_select_first_in_bucket_and_clear_error_when_too_few():
    pool = problems(5)
    rates = {"p0": 0.0, "p1": 0.75, "p2": 0.25, "p3": 0.5, "p4": 0.0}
    assert [p.id for p in select_by_difficulty(pool, rates, "medium", 2)] == ["p2", "p3"]
    assert [p.id for p in select_by_difficulty(pool, rates, "extreme", 1)] == ["p0"]
    with pytest.raises(RftlabError, match=r"only 1 of 5 candidates have base Pass@1 \[0.6, 0.9\]"):
        select_by_difficulty(pool, rates, "easy", 2)
