"""`dropbox-team-log verify`: read every day file back in full and name the ones that are bad.

A sync finds a damaged day file when it reads it and moves it aside by itself, but only the
days in its window, and only the parts it reads (a footer, a column). `verify` reads every file
the readers' glob matches, every page with its checksum (which DuckDB does not check), so it
also finds bytes changed behind an intact footer. `--quarantine` moves each bad file to
`<root>/_quarantine/` (kept for inspection); the output then says how to fetch those days
again. Exit code 1 when any file is bad (moved or not), 0 when all are whole.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import date, timedelta
from typing import Any, TextIO

from dropbox_team_log.cli.analyst import EXIT_FAILURE, EXIT_OK
from dropbox_team_log.cli.dataset_root import add_root_argument, dataset_root
from dropbox_team_log.display import visible
from dropbox_team_log.settings import BACKFILL_DAG_ID


def add_verify_parser(subparsers: Any) -> None:
    v = subparsers.add_parser(
        "verify",
        help="read every day file back (page checksums included) and name the damaged ones",
        description=(
            "Reads every day file of the dataset in full, verifying each Parquet page's "
            "checksum, and lists the files that cannot be read back (truncated, footer broken, "
            "bytes changed) or that are not day files of this package. Exit code 1 when any "
            "is bad. With --quarantine they are moved to <root>/_quarantine/ (kept for "
            "inspection) and their days can be fetched again."
        ),
    )
    add_root_argument(v)
    v.add_argument(
        "--quarantine",
        "--fix",
        action="store_true",
        help="move every bad file to <root>/_quarantine/, out of the readers' way",
    )
    v.set_defaults(handler=verify_command)


def verify_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from dropbox_team_log.dataset import integrity
    from dropbox_team_log.dataset.store import EventDataset

    out = out or sys.stdout
    root = dataset_root(args)
    dataset = EventDataset(root)
    if not dataset.fs.exists(dataset.root):
        print(f"error: the dataset root {visible(root)} does not exist", file=sys.stderr)
        return EXIT_FAILURE
    checks = dataset.verify(quarantine=args.quarantine)
    bad = [check for check in checks if check.problem is not None]
    for check in bad:
        kind = "DAMAGED" if check.damaged else "FOREIGN"
        print(f"{kind} {visible(check.path)}: {visible(check.problem)}", file=out)
        if check.moved_to:
            print(f"  moved to {visible(check.moved_to)}", file=out)
    rows = sum(check.rows for check in checks)
    print(f"{len(checks)} day files checked ({rows:,} rows): {len(bad)} bad", file=out)
    if not bad:
        return EXIT_OK
    if not args.quarantine:
        print(
            "Move them aside (their days are then fetched again): dropbox-team-log verify "
            f"--root {shlex.quote(visible(root))} --quarantine",
            file=out,
        )
        return EXIT_FAILURE
    days = sorted({d for check in bad if (d := integrity.day_of_file(check.path)) is not None})
    if days:
        print(_refetch_advice(days), file=out)
    return EXIT_FAILURE


def _refetch_advice(days: list[date]) -> str:
    """How the moved days come back: by themselves in the incremental window, else a backfill."""
    conf = json.dumps(
        {"start": days[0].isoformat(), "end": (days[-1] + timedelta(days=1)).isoformat()}
    )
    listed = ", ".join(d.isoformat() for d in days)
    return (
        f"Days with a file moved aside (its hours are missing now): {listed}. The incremental "
        "DAG fetches those in its window again by itself; for older days trigger the backfill "
        "(days still whole are left alone):\n"
        f"  airflow dags trigger {BACKFILL_DAG_ID} --conf {shlex.quote(conf)}"
    )
