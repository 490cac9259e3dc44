"""`dropbox-team-log detect`: the detections over the dataset, shown, or written as findings.

Without `--write` it only reads: the findings of a period (default: the last 30 days), each
marked with when it was raised if the findings dataset holds it. `--write` adds the new ones to
`<root>/_findings/` (each finding once; the detections DAG alerts on them); `--changed` evaluates
what the DAG would (the days written since the last evaluation) instead of a period. Knobs:
settings' defaults, the Variable `dropbox_team_log_detections` (read when no `--root` is given),
then `--set KEY=VALUE`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, date, datetime
from typing import Any, TextIO

from dropbox_team_log.cli.analyst import EXIT_OK, EXIT_USAGE
from dropbox_team_log.cli.dataset_root import add_root_argument, dataset_root

COLUMNS = ["severity", "detection", "first_seen", "last_seen", "actor", "asset", "events"]


def add_detect_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "detect",
        help="run the detections (detect_* views) and show or write their findings",
        description=(
            "Runs the detections (docs/detections.md) over the dataset with DuckDB and prints "
            "one row per finding. Default period: the last 30 days (UTC). With --write, the "
            "findings not raised before are added to <root>/_findings/."
        ),
    )
    add_root_argument(p)
    p.add_argument("--start", type=date.fromisoformat, help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--end", type=date.fromisoformat, help="last day, included (default: today)")
    p.add_argument("--days", type=int, help="period length in days (default 30)")
    p.add_argument("--all", action="store_true", help="every day of the dataset")
    p.add_argument(
        "--changed",
        action="store_true",
        help="the days written since the last evaluation, as the detections DAG does (--write)",
    )
    p.add_argument(
        "--detection", action="append", metavar="NAME", help="only this detection (repeatable)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a knob, e.g. mass_delete_files=100 or allowed_share_domains=a.com,b.com",
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--write", action="store_true", help="add the new findings to _findings/")
    p.add_argument("--list", action="store_true", help="list the detections and the knobs")
    p.set_defaults(handler=detect_command)


def detect_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from dropbox_team_log.analytics.detections import DetectionConfigError

    out = out or sys.stdout
    try:
        cfg = _config(args)
    except DetectionConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.list:
        _list(cfg, out)
        return EXIT_OK
    if args.changed and not args.write:
        print("error: --changed records what it evaluated: use it with --write", file=sys.stderr)
        return EXIT_USAGE
    try:
        rows, note = _findings(args, cfg)
    except ValueError as exc:  # a bad period or an unknown detection name
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print(rows, args.format, out)
    if note:
        print(note, file=sys.stderr)
    return EXIT_OK


def _config(args: argparse.Namespace) -> Any:
    from dropbox_team_log.analytics.detections import DetectionConfig, DetectionConfigError

    text = None
    if not args.root:
        from dropbox_team_log import deployment  # the deployment's knobs, like its dataset

        text = deployment.detections_setting()
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise DetectionConfigError(f"--set {item!r}: write KEY=VALUE")
        overrides[key.strip()] = value.strip()
    return DetectionConfig.from_json(text).override(overrides, "--set")


def _findings(args: argparse.Namespace, cfg: Any) -> tuple[list[dict[str, Any]], str | None]:
    from dropbox_team_log.analytics.findings import FindingsStore, evaluate, run_detections
    from dropbox_team_log.analytics.period import resolve_period

    root = dataset_root(args)
    store = FindingsStore(root)
    now = datetime.now(UTC).replace(microsecond=0)
    if args.changed:
        result = run_detections(root, cfg, now=now)
        note = f"{len(result.changed_days)} day(s) changed; {len(result.new)} new finding(s)"
        return result.new, f"{note} written to {store.url}/"
    if args.all:
        rows = evaluate(root, cfg, detections=args.detection).rows
    else:
        period = resolve_period(args.start, args.end, args.days)
        rows = evaluate(
            root, cfg, since=period.start, until=period.end, detections=args.detection
        ).rows
    raised = {r["finding_id"]: r["raised_at"] for r in store.read().to_pylist()}
    note = None
    if args.write:
        new = store.add(rows, raised_at=now)
        raised.update({r["finding_id"]: now for r in new})
        note = f"{len(new)} new finding(s) written to {store.url}/"
    return [{**r, "raised_at": raised.get(r["finding_id"])} for r in rows], note


def _print(rows: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        for row in rows:
            print(json.dumps(row, default=str), file=out)
        return
    columns = [*COLUMNS, "raised_at", "finding_id"]
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow([*columns, "evidence"])
        writer.writerows([[r.get(c) for c in [*columns, "evidence"]] for r in rows])
        return
    from dropbox_team_log.analytics.text import print_rows
    from dropbox_team_log.notifications.alerts import visible

    cells = [[visible(v) if isinstance(v := r.get(c), str) else v for c in columns] for r in rows]
    print_rows(columns, cells, out)
    print(f"({len(rows)} findings)", file=out)


def _list(cfg: Any, out: TextIO) -> None:
    from dataclasses import asdict

    from dropbox_team_log.analytics.detections import DETECTIONS
    from dropbox_team_log.analytics.text import print_rows

    print_rows(
        ["detection", "technique", "title"],
        [(d.name, d.technique, d.title) for d in DETECTIONS],
        out,
    )
    print("\nKnobs (docs/detections.md):", file=out)
    for key, value in asdict(cfg).items():
        shown = ",".join(value) if isinstance(value, tuple) else value
        print(f"  {key} = {shown}", file=out)
