"""The record every task produces, and the paper's prompt suffixes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The paper's prompts (companion code, see shared/paper/NOTES.md): one user turn, question + suffix.
PROMPT_SUFFIXES: dict[str, str] = {
    "gsm8k": 'Let\'s think step by step and output the final answer after "####".',
    "math": "Let's think step by step and output the final answer within \\boxed{}.",
    "none": "",
}


@dataclass(frozen=True)
class Problem:
    """One verifiable problem.

    `answer` is the bare reference answer (`"18"`, `"\\frac{1}{2}"`), already extracted from the
    dataset's worked solution, which (when there is one) is kept in `metadata["solution"]`.
    `prompt_style` names the suffix from PROMPT_SUFFIXES that the paper uses for this source.
    """

    id: str
    question: str
    answer: str
    source: str
    prompt_style: str = "gsm8k"
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def user_message(self, style: str | None = None) -> str:
        """The single user turn: the question followed by the paper's suffix for `style`."""
        suffix = PROMPT_SUFFIXES[style or self.prompt_style]
        return f"{self.question} {suffix}".strip()
