"""`dropbox-team-log connect` / `test-connection`: an admin's grant -> a tested Airflow connection.

Flow: authorization link -> the team admin clicks Allow -> code -> refresh token -> the very
test Airflow's Test button runs (`Connection.test_connection()` -> `DropboxTeamHook`) on the
connection still in memory -> save it. Nothing is saved unless the test passes, so a failed
reconnect never breaks a working connection.

This module is the command: its arguments, the flow's steps in order (`run_connect`) and what it
prints. The steps live beside it: the inputs (connect_options.py), the OAuth exchange
(oauth_flow.py), the connection's test and the metadata DB (connection_store.py). No secret
(app secret, refresh/access token, authorization code) is ever printed or logged; the tokens are
registered with Airflow's secrets masker as soon as they exist, and everything the command
prints after the flow started is scrubbed (`client.redaction`): a server's answer may echo them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from dropbox_team_log.cli.connect_options import (
    ConnectError,
    ConnectOptions,
    UsageError,
    is_terminal,
    options_from_args,
)
from dropbox_team_log.cli.connection_store import (
    build_connection,
    dag_paused,
    ensure_pool,
    extra_of,
    fetch_team_info,
    load_saved,
    quiet_libraries,
    save_connection,
    verify_connection,
    verify_saved,
)
from dropbox_team_log.cli.oauth_flow import finish_flow, mask_secrets, start_flow
from dropbox_team_log.cli.teams import backfill_note, register
from dropbox_team_log.client.redaction import scrub
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.settings import (
    API_POOL,
    API_POOL_SLOTS,
    APP_SECRET_ENV,
    BACKFILL_DAG_ID,
    CONN_TYPE,
    DEFAULT_CONN_ID,
    INCREMENTAL_DAG_ID,
    REQUIRED_SCOPES,
    TEAMS_VARIABLE,
)
from dropbox_team_log.timeutil import to_wire

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class ConnectResult:
    """What was connected; printed by the CLI, asserted by the tests."""

    conn_id: str
    team_id: str
    team_name: str
    licensed_users: int | None
    connected_at: str
    saved: bool
    created: bool
    kept_connected_at: bool
    test_message: str
    pool_created: bool = False
    #: Newly added to the teams registry (False: it was there, or --no-save).
    registered: bool = False
    #: The DAGs that are still paused (the dag-processor recorded them so), in order.
    paused_dags: tuple[str, ...] = ()
    #: Why the team could not be registered (the registry lives in another secrets backend).
    registry_problem: str | None = None


def add_connect_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "connect",
        help="connect a Dropbox team: authorization link -> Allow -> code -> saved connection",
        description=(
            "Connects a Dropbox Business team to Airflow. Prints an authorization link for a "
            "team admin, exchanges the code for an offline refresh token, runs the connection "
            "test (team/get_info + one team_log/get_events call) and saves the Airflow "
            f"connection (type {CONN_TYPE}). Re-running updates the same connection."
        ),
    )
    p.add_argument("--app-key", required=True, help="the app key from the App Console")
    p.add_argument(
        "--app-secret",
        help=(
            f"the app secret; better left out: it is read from ${APP_SECRET_ENV} or prompted for "
            "(a command-line value is visible in the process list and shell history)"
        ),
    )
    p.add_argument(
        "--pkce",
        action="store_true",
        help="use PKCE instead of the app secret (the app must allow public clients)",
    )
    p.add_argument(
        "--code",
        help=(
            "the authorization code, if already obtained from the link (non-interactive use); "
            "write --code=CODE, as a code may start with '-'"
        ),
    )
    p.add_argument(
        "--conn-id", default=DEFAULT_CONN_ID, help=f"Airflow connection id ({DEFAULT_CONN_ID})"
    )
    p.add_argument(
        "--api-base-url",
        help=(
            "API base URL override, e.g. http://127.0.0.1:8765 for the local emulator "
            "(plain http only on loopback); default: Dropbox"
        ),
    )
    p.add_argument(
        "--no-save",
        action="store_true",
        help="run the flow and the test, but do not write the Airflow connection",
    )
    p.add_argument(
        "--reset-connected-at",
        action="store_true",
        help=(
            "set extra.connected_at to now even when reconnecting the same team. By default a "
            "reconnect keeps the original time because the backfill DAG loads the days before "
            "it and the incremental DAG takes over from it: moving it would re-split that "
            "hand-off (gaps or double work)"
        ),
    )
    p.set_defaults(handler=connect_command)


def add_test_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "test-connection",
        help="test a saved connection (team/get_info + one events call)",
        description=(
            "Runs DropboxTeamHook.test_connection() on a saved connection (environment variable "
            "or metadata DB), like the UI's Test button, without needing "
            "AIRFLOW__CORE__TEST_CONNECTION=Enabled."
        ),
    )
    p.add_argument("--conn-id", default=DEFAULT_CONN_ID, help=f"connection id ({DEFAULT_CONN_ID})")
    p.set_defaults(handler=check_connection_command)


def run_connect(
    opts: ConnectOptions,
    *,
    out: TextIO | None = None,
    read_code: Callable[[str], str] | None = None,
) -> ConnectResult:
    """The whole flow; raises ConnectError / UsageError / DropboxTeamLogError on failure."""
    out = out or sys.stdout
    if opts.code is None and read_code is None:  # no way to get the code in this run
        print(_instructions(start_flow(opts)[1], opts), file=out, flush=True)
        raise UsageError(
            "no --code given and stdin is not a terminal: open the link above, click Allow, "
            "then run the command again with --code=CODE"
            + (
                " (without --pkce: a PKCE code only works in the run that printed it)"
                if opts.pkce
                else ""
            )
        )
    mask_secrets(opts.app_secret)  # imports Airflow: after the early exit above, which needs none
    existing = existing_connection(opts)  # fail fast if the DB is not ready

    flow, url = start_flow(opts)
    code = opts.code
    if code is None and read_code is not None:
        print(_instructions(url, opts), file=out, flush=True)
        code = read_code(url).strip()
        if not code:
            raise UsageError("no authorization code entered")
    else:
        print(f"Using the authorization code given with --code ({_where(opts)}).", file=out)

    tokens = finish_flow(flow, code, opts)
    print("Authorization code accepted; testing the connection ...", file=out, flush=True)
    return save_grant(opts, tokens.refresh_token, existing)


def existing_connection(opts: ConnectOptions) -> Any:
    """The saved connection `opts` would update (None: a new one, or --no-save); ConnectError
    when that id holds a connection of another type."""
    existing = load_saved(opts.conn_id) if opts.save else None
    if existing is not None and existing.conn_type != CONN_TYPE:
        raise ConnectError(
            f"Airflow connection '{opts.conn_id}' exists with type '{existing.conn_type}', not "
            f"'{CONN_TYPE}': pick another connection id or delete it first"
        )
    return existing


def save_grant(opts: ConnectOptions, refresh_token: str, existing: Any) -> ConnectResult:
    """The flow's end, for the command and the teams page alike: test the grant on the
    connection still in memory, then save it, create the pool and register the team."""
    candidate = build_connection(opts, refresh_token)
    ok, message = verify_connection(candidate)
    if not ok:
        raise ConnectError(f"Connection test failed, nothing saved: {message}")
    info = fetch_team_info(candidate)
    team_id, team_name = str(info.get("team_id", "")), str(info.get("name", ""))

    now = to_wire(int(time.time()))
    connected_at, kept = now, False
    old_extra: dict[str, Any] = {}
    if existing is not None:
        old_extra = extra_of(existing)
        same_team = bool(team_id) and old_extra.get("team_id") == team_id
        if same_team and old_extra.get("connected_at") and not opts.reset_connected_at:
            connected_at, kept = _normalized_connected_at(old_extra["connected_at"], now)
    keep = {k: v for k, v in old_extra.items() if k == "timeout"}
    final = build_connection(
        opts,
        refresh_token,
        team_id=team_id,
        team_name=team_name,
        connected_at=connected_at,
        extra_keep=keep,
    )
    created = pool_created = registered = False
    registry_problem: str | None = None
    paused_dags: tuple[str, ...] = ()
    if opts.save:
        created = save_connection(final)
        pool_created = ensure_pool(API_POOL, API_POOL_SLOTS, "Dropbox team API concurrency")
        try:
            registered, _ = register(opts.conn_id)
        except DropboxTeamLogError as exc:  # the connection is saved: say what is left to do
            registry_problem = str(exc)
        paused_dags = tuple(d for d in (INCREMENTAL_DAG_ID, BACKFILL_DAG_ID) if dag_paused(d))
    return ConnectResult(
        conn_id=opts.conn_id,
        team_id=team_id,
        team_name=team_name,
        licensed_users=info.get("num_licensed_users"),
        connected_at=connected_at,
        saved=opts.save,
        created=created,
        pool_created=pool_created,
        registered=registered,
        paused_dags=paused_dags,
        registry_problem=registry_problem,
        kept_connected_at=kept,
        test_message=message,
    )


def _normalized_connected_at(value: Any, fallback: str) -> tuple[str, bool]:
    """Keep a valid earlier connected_at (normalised to the wire format); else start anew."""
    from dropbox_team_log.hooks.dropbox_team import parse_connected_at

    try:
        parsed = parse_connected_at(value, "-")
    except DropboxTeamLogError:
        return fallback, False
    if parsed is None:
        return fallback, False
    return to_wire(int(parsed.timestamp())), True


def connect_command(args: argparse.Namespace) -> int:
    quiet_libraries()
    try:
        opts = options_from_args(args)
        result = run_connect(opts, read_code=_prompt_code if is_terminal(sys.stdin) else None)
    except UsageError as exc:
        print(f"dropbox-team-log connect: error: {scrub(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except DropboxTeamLogError as exc:
        print(f"dropbox-team-log connect: failed: {scrub(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except (KeyboardInterrupt, EOFError):
        print("\ndropbox-team-log connect: interrupted, nothing saved", file=sys.stderr)
        return EXIT_FAILURE
    print(scrub(_success(result)))
    return EXIT_OK


def check_connection_command(args: argparse.Namespace) -> int:
    quiet_libraries()
    ok, message = verify_saved(args.conn_id)
    message = scrub(message)
    if ok:
        print(f"OK: {message}")
        return EXIT_OK
    print(f"FAILED: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _instructions(url: str, opts: ConnectOptions) -> str:
    return "\n".join(
        [
            f"1. As a Dropbox team admin, open this link ({_where(opts)}):",
            "",
            f"   {url}",
            "",
            f"2. Click Allow (the app asks for {' and '.join(REQUIRED_SCOPES)} only).",
            "3. Copy the authorization code shown and paste it here.",
        ]
    )


def _where(opts: ConnectOptions) -> str:
    return f"API base URL override {opts.base_url}" if opts.base_url else "Dropbox"


def _success(result: ConnectResult) -> str:
    users = result.licensed_users if result.licensed_users is not None else "unknown"
    lines = [
        f"Connected Dropbox team '{result.team_name}' ({result.team_id}): {users} licensed users."
    ]
    if result.saved:
        verb = "Created" if result.created else "Updated"
        lines.append(f"{verb} Airflow connection '{result.conn_id}' (type {CONN_TYPE}).")
        if result.kept_connected_at:
            lines.append(
                f"Kept the original connected_at {result.connected_at} (same team; "
                "--reset-connected-at would move it)."
            )
        else:
            lines.append(f"connected_at = {result.connected_at}")
        env_name = f"AIRFLOW_CONN_{result.conn_id.upper()}"
        if env_name in os.environ:
            lines.append(
                f"WARNING: ${env_name} is set and takes precedence over the saved connection."
            )
        if result.pool_created:
            lines.append(
                f"Created the Airflow pool '{API_POOL}' ({API_POOL_SLOTS} slots: sync tasks "
                "running at once); resize it with `airflow pools set`."
            )
        if result.registry_problem:
            lines.append(
                f"WARNING: team '{result.conn_id}' is not registered: {result.registry_problem}"
            )
        elif result.registered:
            lines.append(
                f"Registered team '{result.conn_id}' in the Variable {TEAMS_VARIABLE}: the "
                f"scheduled DAG {INCREMENTAL_DAG_ID} keeps it current."
            )
            lines.append(backfill_note(result.conn_id))
        else:
            lines.append(
                f"Team '{result.conn_id}' was registered already (Variable {TEAMS_VARIABLE})."
            )
        lines += [
            "",
            "Next steps:",
            f"  dropbox-team-log test-connection --conn-id {result.conn_id}",
        ]
        if result.paused_dags:
            lines.append(
                f"  airflow dags unpause {' && airflow dags unpause '.join(result.paused_dags)}"
                "     (paused DAGs run nothing, the backfill included)"
            )
    else:
        lines.append(
            "--no-save: the connection was tested but not saved; the tokens are discarded."
        )
    return "\n".join(lines)


def _prompt_code(url: str) -> str:
    return input("Authorization code: ")
