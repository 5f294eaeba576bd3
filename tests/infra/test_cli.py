"""``clip-lambda`` (infra/cli.py): one command, each subcommand handed to its tool with the rest of the line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pytest

from infra import cli


def test_every_subcommand_names_a_tool_with_a_main() -> None:
    for name, (help_text, load) in cli._PASS_THROUGH.items():
        assert help_text and callable(load()), name
    [sub] = [a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert {"build-model", "embed", *cli._PASS_THROUGH} <= set(sub.choices)


def test_a_tools_options_reach_its_main_unparsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``clip-lambda search --help`` is the tool's help, not the dispatcher's: everything after the name is the
    tool's own argv (and its exit status the command's)."""
    seen: list[list[str]] = []

    def tool(argv: list[str]) -> int:
        seen.append(argv)
        return 7

    monkeypatch.setitem(cli._PASS_THROUGH, "search", ("help", lambda: tool))
    assert cli.main(["search", "--help", "a cat", "--k", "3"]) == 7
    monkeypatch.setattr(sys, "argv", ["clip-lambda", "search", "x"])
    assert cli.main() == 7
    assert seen == [["--help", "a cat", "--k", "3"], ["x"]]


def test_the_engine_and_build_commands_are_parsed_here(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2 and "required" in capsys.readouterr().err
    args = cli.parser().parse_args(["build-model", "--out", "m", "--no-text"])
    assert (args.command, args.out, args.no_text) == ("build-model", "m", True)
    with pytest.raises(SystemExit):
        cli.main(["no-such-command"])
