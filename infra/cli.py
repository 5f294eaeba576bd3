"""``clip-lambda``: the project's one command. Each subcommand lives with its tool; this dispatcher sits in
infra/ because it may import all of them (the engine and the functions never import a tool).

    clip-lambda build-model ...   layer/convert/cli.py   checkpoint → gated int8 model directory
    clip-lambda embed ...         layer/cli.py           images → vectors, engine only
    clip-lambda bench ...         bench/run.py           the benchmark suite
    clip-lambda local ...         infra/local/stack.py   moto + both functions under the RIE (make run)
    clip-lambda backfill ...      infra/backfill.py      embed a deployed stack's existing objects (Step Functions)
    clip-lambda search ...        infra/search.py        the index's images nearest to a text or an image
    clip-lambda item ...          infra/lookup.py        one object's item, with its vector from item or index
    clip-lambda ui ...            infra/ui/cli.py        the gallery: search, browse and upload in a browser

Subcommands import their heavy dependencies only when run: ``embed`` never loads torch or boto3.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# Tools that parse their own options: everything after the subcommand goes to their main(argv).
_PASS_THROUGH: dict[str, tuple[str, Callable[[], Callable[[list[str]], int]]]] = {
    "bench": ("benchmark suite (bench/); see `clip-lambda bench --help`", lambda: _load("bench.run")),
    "local": ("run the local stack (moto + both functions under the RIE)", lambda: _load("infra.local.stack")),
    "backfill": ("embed the objects already in a deployed stack's bucket", lambda: _load("infra.backfill")),
    "search": ("the index's images nearest to a text or an image", lambda: _load("infra.search")),
    "item": ("one object's item, with its vector from the item or the index", lambda: _load("infra.lookup")),
    "ui": ("the gallery: search, browse and upload in a browser (127.0.0.1)", lambda: _load("infra.ui.cli")),
}


def _load(module: str) -> Callable[[list[str]], int]:
    from importlib import import_module

    main: Callable[[list[str]], int] = import_module(module).main
    return main


def parser() -> argparse.ArgumentParser:
    from layer import cli as engine_cli
    from layer.convert import cli as convert_cli

    p = argparse.ArgumentParser(prog="clip-lambda", description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    convert_cli.add_parser(sub)
    engine_cli.add_parser(sub)
    for name, (help_text, _) in _PASS_THROUGH.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _PASS_THROUGH:
        return _PASS_THROUGH[args[0]][1]()(args[1:])
    parsed = parser().parse_args(args)
    return int(parsed.func(parsed))


if __name__ == "__main__":
    raise SystemExit(main())
