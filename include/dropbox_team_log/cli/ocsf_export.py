"""`dropbox-team-log ocsf-export`: the dataset as OCSF records, in Parquet, for security lakes.

Writes every event of the chosen days as an OCSF 1.1 record (docs/ocsf.md): as plain hive
partitions (`class_uid=/event_day=`, default) and/or in Amazon Security Lake's custom-source
layout (`--layout security-lake`, which needs `--region` and `--account-id`). Re-running it for
a day replaces that day's files. Without `--root` it reads the dataset the DAGs write.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

from dropbox_team_log.cli.analyst import EXIT_OK, EXIT_USAGE
from dropbox_team_log.cli.dataset_root import add_root_argument, dataset_root
from dropbox_team_log.settings import OCSF_LAYOUTS


def add_ocsf_export_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ocsf-export",
        help="write the events as OCSF records (Parquet) for Security Lake or any OCSF reader",
        description=(
            "Maps every event to an OCSF 1.1 record (File Hosting Activity, Authentication, "
            "Account Change, Entity / User Access / Group Management, API Activity; "
            "docs/ocsf.md) and writes one Parquet file per class and UTC day: hive partitions "
            "<out>/class_uid=N/event_day=YYYY-MM-DD/, and with --layout security-lake the "
            "Security Lake custom-source layout <out>/ext/<source>/region=R/accountId=A/"
            "eventDay=YYYYMMDD/. Re-running replaces a day's files."
        ),
    )
    add_root_argument(p)
    p.add_argument(
        "--out",
        help=(
            "where to write (folder or URL; for Security Lake, the lake's bucket, e.g. "
            "s3://aws-security-data-lake-us-east-1-abc/); default <root>/_ocsf"
        ),
    )
    p.add_argument("--start", type=date.fromisoformat, help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--end", type=date.fromisoformat, help="last day, included")
    p.add_argument("--layout", choices=OCSF_LAYOUTS, default="hive", help="what to write (hive)")
    p.add_argument("--region", help="Security Lake: the AWS region of the lake, e.g. us-east-1")
    p.add_argument("--account-id", help="Security Lake: the 12-digit AWS account of the source")
    p.add_argument(
        "--source-version",
        help="Security Lake: the custom sources' version, if their location ends in one",
    )
    p.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    p.set_defaults(handler=ocsf_export_command)


def _security_lake(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The Security Lake target of the arguments, or the reason they are wrong."""
    from dropbox_team_log.analytics.ocsf_destination import DestinationError, lake_target

    try:
        target = lake_target(
            args.layout,
            args.region,
            args.account_id,
            args.source_version,
            label=lambda name: "--" + name.replace("_", "-"),
        )
    except DestinationError as exc:
        return None, str(exc)
    return target, None


def ocsf_export_command(args: argparse.Namespace) -> int:
    from dropbox_team_log.analytics import ocsf_export
    from dropbox_team_log.analytics.ocsf_map import CLASSES

    lake, problem = _security_lake(args)
    if problem is None and args.start and args.end and args.start > args.end:
        problem = f"--start {args.start} is after --end {args.end}"
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    root = dataset_root(args)
    out = args.out or ocsf_export.default_out(root)
    days = None
    if args.start or args.end:
        from dropbox_team_log.dataset.store import EventDataset

        days = [
            day
            for day in EventDataset(root).all_days()
            if (args.start is None or day >= args.start) and (args.end is None or day <= args.end)
        ]
    result = ocsf_export.export(
        root,
        out,
        days=days,
        hive=args.layout in ("hive", "both"),
        security_lake=lake,
        threads=args.threads,
    )
    print(
        f"{result.records:,} events of {len(result.days)} days -> {len(result.written)} files "
        f"under {out} ({result.events_per_second:,.0f} events/s)"
    )
    for class_uid, count in sorted(result.by_class.items()):
        print(f"  {class_uid} {CLASSES[class_uid][0]}: {count:,}")
    if result.removed:
        print(f"removed {len(result.removed)} files of classes those days no longer have")
    return EXIT_OK
