"""`dropbox-team-log`: a thin dispatcher; each subcommand lives in its own module.

A module adds a subcommand with `add_*_parser(subparsers)`, which sets `handler` (args -> exit
code) as a default. Airflow is imported only by the handlers, so `--help` stays fast.
Exit codes: 0 ok, 1 failure (the reason on stderr), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dropbox_team_log import __version__
from dropbox_team_log.cli.analyst import add_analyst_parsers
from dropbox_team_log.cli.connect import add_connect_parser, add_test_parser
from dropbox_team_log.cli.detect import add_detect_parser
from dropbox_team_log.cli.ocsf_export import add_ocsf_export_parser
from dropbox_team_log.cli.teams import add_teams_parser
from dropbox_team_log.cli.verify import add_verify_parser

#: Subcommand registrars, in the order `--help` lists them.
REGISTRARS: list[Callable[[Any], None]] = [
    add_connect_parser,
    add_test_parser,
    add_teams_parser,
    add_analyst_parsers,
    add_detect_parser,
    add_ocsf_export_parser,
    add_verify_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropbox-team-log",
        description="Dropbox Business team activity log -> Parquet, on Airflow.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on bad arguments
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
