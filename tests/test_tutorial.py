"""docs/tutorial.md cannot rot: every `rftlab` command in it parses, and its config and overrides resolve.

Running the tutorial takes most of an hour, so the test stops short of running anything: each command
line goes through the CLI's own parser, a config with its overrides through `load_config` (an unknown
key or a value out of range fails here), a pipeline spec through its loader with the same `--layers`,
and every script or file the tutorial names must exist in the repository.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from rftlab.cli import _load, build_parser

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
CONFIG_COMMANDS = {"run", "eval", "plan"}


def _shell_lines() -> list[str]:
    """The command lines of the tutorial's ```bash blocks (comments and continuations joined)."""
    text = TUTORIAL.read_text()
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for raw in joined.splitlines():
            line = raw.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _words(line: str) -> list[str]:
    """A shell line's words, with `&&`, `||`, `|` and `;` as words of their own (quotes respected)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def _rftlab_commands() -> list[list[str]]:
    """Every `rftlab …` (or `.venv/bin/rftlab …`) invocation, split on `&&`, `||`, `|` and `;`."""
    commands = []
    for line in _shell_lines():
        command: list[str] = []
        for word in [*_words(line), ";"]:
            if word not in ("&&", "||", "|", ";"):
                command.append(word)
                continue
            while command and "=" in command[0] and not command[0].startswith("-"):
                command = command[1:]  # an environment assignment such as OMP_NUM_THREADS=1
            if command and command[0] in ("rftlab", ".venv/bin/rftlab"):
                commands.append(command[1:])
            command = []
    return commands


def test_the_tutorial_has_commands() -> None:
    commands = _rftlab_commands()
    # the journey the issue asks for: a run, a layer as a sweep, its report, the bandit theory check, a GPU plan
    verbs = {words[0] for words in commands}
    assert {"run", "pipeline", "report", "bandit", "plan"} <= verbs, verbs


@pytest.mark.parametrize("words", _rftlab_commands(), ids=lambda words: " ".join(words)[:60])
def test_every_command_parses_and_its_config_resolves(words: list[str]) -> None:
    args = build_parser().parse_args(words)
    if args.command in CONFIG_COMMANDS:
        _load(args)  # unknown keys, bad values and unknown built-ins raise here
    elif args.command == "config" and args.action == "show":
        _load(args)
    elif args.command == "pipeline":
        from rftlab.pipeline.spec import load_spec

        spec = load_spec(args.spec)
        names = {layer.name for layer in spec.layers}
        assert set(args.layers or []) <= names, f"unknown layers {set(args.layers) - names}"


def test_every_script_and_repository_file_it_names_exists() -> None:
    for line in _shell_lines():
        for word in _words(line):
            if word.startswith(("scripts/", "configs/", "benchmarks/")):
                path = word.split("=", 1)[-1]
                assert (ROOT / path).exists() or (ROOT / "src" / "rftlab" / path).exists(), word
