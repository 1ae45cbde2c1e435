"""`kotoba`: the command line for people (and `--json` for machines).

Each area registers its own commands from `services/<area>/cli.py`
(`register(cli: Cli)`); this module only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

# Areas whose cli module adds commands (each imported only when the CLI starts).
AREAS = (
    "services.common.cli",
    "services.seed.cli",
    "services.indexer.cli",
    "services.retrieval.cli",
    "services.conversations.cli",
    "services.gateway.cli",
    "services.evaluation.cli",
)


class Cli:
    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(prog="kotoba", description="Kotoba, the Japanese tutor.")
        self._commands = self.parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def command(self, name: str, help: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        """A top-level `kotoba NAME` command running `handler` with the parsed arguments."""
        parser = self._commands.add_parser(name, help=help, description=help)
        parser.set_defaults(handler=handler)
        return parser

    def group(self, name: str, help: str) -> argparse._SubParsersAction:
        """A command with subcommands (e.g. `kotoba index build`), shared across areas."""
        if name not in self._groups:
            parser = self._commands.add_parser(name, help=help, description=help)
            self._groups[name] = parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND", required=True)
        return self._groups[name]

    def subcommand(self, group: str, name: str, help: str,
                   handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        """A `kotoba GROUP NAME` command (admin, eval, index, seed, …) running `handler`."""
        parser = self.group(group, help=f"{group} commands").add_parser(name, help=help, description=help)
        parser.set_defaults(handler=handler)
        return parser


def build_cli() -> Cli:
    """The `kotoba` command line with every area's subcommands registered."""
    cli = Cli()
    for area in AREAS:
        importlib.import_module(area).register(cli)
    return cli


def main(argv: list[str] | None = None) -> int:
    """Run one `kotoba` command; its exit status (a usage error is reported, not raised)."""
    args = build_cli().parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
