"""`dropbox-team-log query` and `dropbox-team-log report`: the analysts' two commands.

`query [SQL]` runs SQL (argument or stdin) with the analyst views (analytics/views.py) defined,
or opens a small interactive SQL prompt; `report` prints the key tables and writes the HTML
report. Without `--root` both read the dataset the DAGs write (Airflow Variable, else the project
default).

Output for people (the table format, the report's tables, error messages that may quote a value)
shows control characters as escapes (`display.visible`); `--format csv` and `--format json` are
for programs and keep the exact data (docs/querying.md, "Hostile strings and spreadsheets").
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from datetime import date
from typing import Any, TextIO

from dropbox_team_log.cli.dataset_root import add_root_argument, dataset_root
from dropbox_team_log.display import visible

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_FORMATS = ("table", "csv", "json")


TEAM_HELP = (
    "one team only: its connection id, team id or team name (default: every team; "
    "`query 'SELECT * FROM teams'` lists them)"
)


def add_analyst_parsers(subparsers: Any) -> None:
    q = subparsers.add_parser(
        "query",
        help="run SQL over the dataset with the analyst views defined (DuckDB)",
        description=(
            "Runs SQL with DuckDB over the dataset, with the views events, "
            "unauthenticated_access, external_sharing, sign_ins and admin_actions defined "
            "(docs/querying.md). SQL comes from the argument, else from stdin; on a terminal "
            "without SQL an interactive prompt opens (end statements with ';', Ctrl-D quits)."
        ),
    )
    q.add_argument("sql", nargs="?", help="the SQL to run (several statements: the last prints)")
    add_root_argument(q)
    q.add_argument("--format", choices=_FORMATS, default="table", help="output format (table)")
    q.add_argument("--max-rows", type=int, default=1000, help="table format: rows shown (1000)")
    q.add_argument("--views", action="store_true", help="list the views and their columns")
    q.add_argument("--team", help=TEAM_HELP)
    q.set_defaults(handler=query_command)

    r = subparsers.add_parser(
        "report",
        help="write the HTML report (charts) of a period and print its key tables",
        description=(
            "Renders a self-contained HTML report (Plotly charts, plotly.js inline: works "
            "offline) of whole UTC days, compared with the same number of days before, and "
            "prints the key tables. Default period: the last 30 days up to today (UTC)."
        ),
    )
    add_root_argument(r)
    r.add_argument("--start", type=date.fromisoformat, help="first day, YYYY-MM-DD (UTC)")
    r.add_argument("--end", type=date.fromisoformat, help="last day, included (default: today)")
    r.add_argument("--days", type=int, help="period length in days (default 30)")
    r.add_argument(
        "--out",
        help=(
            "where to write the HTML (local path or URL); default: Variable "
            "dropbox_team_log_report_path, else <root>/_reports/dropbox_team_log_report.html"
        ),
    )
    r.add_argument("--quiet", action="store_true", help="do not print the tables")
    r.add_argument("--team", help=TEAM_HELP)
    r.set_defaults(handler=report_command)


# --- query -------------------------------------------------------------------------------------


def query_command(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    import duckdb

    from dropbox_team_log.analytics import views as query

    stdin = stdin or sys.stdin
    try:
        con = query.connect(dataset_root(args), team=args.team)
    except ValueError as exc:  # an unknown team: says which there are
        print(f"error: {visible(exc)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.views:
            for name, columns in query.view_columns(con).items():
                print(f"{name}: " + ", ".join(f"{c} {t}" for c, t in columns))
            return EXIT_OK
        sql = args.sql
        if sql is None and not stdin.isatty():
            sql = stdin.read()
        if sql is None:
            return _prompt(con, args, stdin)
        try:
            _run(con, sql, args)
        except duckdb.Error as exc:
            print(f"error: {visible(exc)}", file=sys.stderr)
            return EXIT_FAILURE
        return EXIT_OK
    finally:
        con.close()


def _run(con: Any, sql: str, args: argparse.Namespace, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    result = con.execute(sql)
    if result.description is None:
        return
    columns = [d[0] for d in result.description]
    rows = result.fetchall()
    if args.format == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(rows)
    elif args.format == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str), file=out)
    else:
        from dropbox_team_log.analytics.text import print_rows

        print_rows(columns, rows[: args.max_rows], out)
        more = len(rows) - args.max_rows
        print(f"({len(rows)} rows{f', {more} not shown' if more > 0 else ''})", file=out)


def _prompt(con: Any, args: argparse.Namespace, stdin: TextIO) -> int:
    """A minimal SQL prompt: statements end with ';'; errors are shown, the session goes on."""
    import duckdb

    with contextlib.suppress(ImportError):  # line editing and history for input()
        import readline  # ruff: ignore[unused-import]
    print(
        "Views: events, teams, unauthenticated_access, external_sharing, sign_ins, admin_actions."
    )
    print("End statements with ';'. Ctrl-D quits.")
    buffer: list[str] = []
    while True:
        try:
            line = input("sql> " if not buffer else "...> ")
        except EOFError:
            print()
            return EXIT_OK
        buffer.append(line)
        if line.rstrip().endswith(";"):
            try:
                _run(con, "\n".join(buffer), args)
            except duckdb.Error as exc:
                print(f"error: {visible(exc)}")
            buffer = []


# --- report ------------------------------------------------------------------------------------


def report_command(args: argparse.Namespace) -> int:
    from dropbox_team_log.analytics.period import resolve_period
    from dropbox_team_log.analytics.report import write_report

    try:
        period = resolve_period(args.start, args.end, args.days)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    root = dataset_root(args)
    out = args.out
    if out is None:
        from dropbox_team_log import deployment

        out = deployment.report_path(root)
    try:
        path = write_report(
            root, out=out, period=period, echo=None if args.quiet else sys.stdout, team=args.team
        )
    except ValueError as exc:  # an unknown team: says which there are
        print(f"error: {visible(exc)}", file=sys.stderr)
        return EXIT_USAGE
    print(f"\nReport written: {path}")
    return EXIT_OK
