"""``lading <command> --help`` says what the command does, for every command."""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Iterator

import pytest
from support.server import lading_command

from registry.cli import build_parser


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str | None, argparse.ArgumentParser]]:
    """(command path, the help its parent lists, its parser) for every (sub)command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), listed.get(name), sub
                yield from commands(sub, (*path, name))


def test_every_command_is_described_in_its_own_help() -> None:
    undescribed = []
    for path, listed, parser in commands(build_parser()):
        own = " ".join(parser.format_help().split())  # argparse wraps long lines
        if not listed or " ".join(listed.split()) not in own:
            undescribed.append(" ".join(path))
    assert not undescribed, f"--help says nothing of what these do: {undescribed}"


def test_every_option_says_what_it_does() -> None:
    silent = [
        f"{' '.join(('lading', *path))} {action.option_strings[-1]}"
        for path, _, parser in [((), None, build_parser()), *commands(build_parser())]
        for action in parser._actions
        if action.option_strings and action.help is None
    ]
    assert not silent, f"options without a help text: {silent}"


@pytest.mark.parametrize(
    ("command", "says"),
    [(["repo", "rm"], "delete a repository"), (["user", "add"], "create a user"),
     (["gc"], "collect garbage")],
)  # fmt: skip
def test_help_of_a_real_process(command: list[str], says: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    shown = subprocess.run(
        [*lading_command(), *command, "--help"], capture_output=True, text=True, env=env,
        timeout=60, check=True,
    )  # fmt: skip
    assert says in shown.stdout.split("options:")[0], shown.stdout
