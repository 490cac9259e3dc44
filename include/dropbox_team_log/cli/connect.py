"""`dropbox-team-log connect` / `test-connection`: an admin's grant -> a tested Airflow connection.

Flow: authorization link -> the team admin clicks Allow -> code -> refresh token -> the very
test Airflow's Test button runs (`Connection.test_connection()` -> `DropboxTeamHook`) on the
connection still in memory -> save it. Nothing is saved unless the test passes, so a failed
reconnect never breaks a working connection.

No secret (app secret, refresh/access token, authorization code) is ever printed or logged; the
tokens are registered with Airflow's secrets masker as soon as they exist.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import requests

from dropbox_team_log.client.transport import build_session, normalize_base_url, rewrite_url
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.settings import (
    APP_SECRET_ENV,
    BACKFILL_DAG_ID,
    CONN_TYPE,
    DEFAULT_CONN_ID,
    INCREMENTAL_DAG_ID,
    REQUIRED_SCOPES,
)
from dropbox_team_log.timeutil import to_wire

if TYPE_CHECKING:
    from dropbox.oauth import DropboxOAuth2FlowNoRedirect, OAuth2FlowNoRedirectResult

TOKEN_TIMEOUT = 30.0
ACCESS_TYPE = "offline"  # a refresh token: the only grant that runs unattended
_CONN_ID_RE = re.compile(r"^[\w.-]{1,200}$")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

log = logging.getLogger(__name__)


class UsageError(Exception):
    """Bad or missing arguments (exit 2); found before any network call where possible."""


class ConnectError(DropboxTeamLogError):
    """The connect flow failed (exit 1); the message says why and what to do."""


@dataclass(frozen=True)
class ConnectOptions:
    """Validated inputs of one `connect` run."""

    app_key: str
    app_secret: str | None  # None: PKCE (a public client, no secret stored)
    conn_id: str = DEFAULT_CONN_ID
    base_url: str | None = None
    code: str | None = None
    save: bool = True
    reset_connected_at: bool = False

    def __repr__(self) -> str:  # the secret must not reach a traceback or a debugger dump
        return (
            f"ConnectOptions(app_key={self.app_key!r}, pkce={self.pkce}, "
            f"conn_id={self.conn_id!r}, base_url={self.base_url!r}, save={self.save})"
        )

    @property
    def pkce(self) -> bool:
        return self.app_secret is None


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


# --- argument handling -----------------------------------------------------------------------


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


def options_from_args(
    args: argparse.Namespace,
    *,
    environ: dict[str, str] | None = None,
    stdin: TextIO | None = None,
    read_secret: Callable[[str], str] | None = None,
) -> ConnectOptions:
    """Check every input before any network call; raise UsageError with the fix."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    stdin = sys.stdin if stdin is None else stdin
    app_key = (args.app_key or "").strip()
    if not app_key:
        raise UsageError("--app-key is empty: copy the app key from the App Console")
    if not _CONN_ID_RE.match(args.conn_id or ""):
        raise UsageError(
            f"--conn-id {args.conn_id!r} is not a valid connection id (letters, digits, _ . -)"
        )
    base_url = None
    if args.api_base_url:
        try:
            base_url = normalize_base_url(args.api_base_url)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.pkce and args.app_secret is not None:
        raise UsageError("--app-secret and --pkce exclude each other: PKCE uses no app secret")
    secret: str | None = None
    if not args.pkce:
        secret = args.app_secret if args.app_secret is not None else environ.get(APP_SECRET_ENV)
        if secret is None:
            if not _isatty(stdin):
                raise UsageError(
                    f"no app secret: set ${APP_SECRET_ENV}, pass --app-secret, or use --pkce "
                    "(stdin is not a terminal, so it cannot be prompted for)"
                )
            secret = (read_secret or getpass.getpass)("App secret (input hidden): ")
        secret = secret.strip()
        if not secret:
            raise UsageError("the app secret is empty: copy it from the App Console, or use --pkce")
    code = args.code.strip() if args.code else None
    if args.code is not None and not code:
        raise UsageError("--code is empty")
    return ConnectOptions(
        app_key=app_key,
        app_secret=secret,
        conn_id=args.conn_id,
        base_url=base_url,
        code=code,
        save=not args.no_save,
        reset_connected_at=args.reset_connected_at,
    )


# --- the flow --------------------------------------------------------------------------------


def start_flow(opts: ConnectOptions) -> tuple[DropboxOAuth2FlowNoRedirect, str]:
    """The SDK's no-redirect flow on our session; the link points at the override if any."""
    from dropbox.oauth import DropboxOAuth2FlowNoRedirect

    flow = DropboxOAuth2FlowNoRedirect(
        opts.app_key,
        consumer_secret=opts.app_secret,
        use_pkce=opts.pkce,
        token_access_type=ACCESS_TYPE,
        scope=list(REQUIRED_SCOPES),
        timeout=TOKEN_TIMEOUT,
    )
    flow.requests_session = build_session(opts.base_url)
    url = flow.start()
    if opts.base_url is not None:
        url = rewrite_url(url, opts.base_url)
    return flow, url


def finish_flow(
    flow: DropboxOAuth2FlowNoRedirect, code: str, opts: ConnectOptions
) -> OAuth2FlowNoRedirectResult:
    """Code -> tokens, with a reason a person can act on for each way it fails."""
    where = opts.base_url or "https://api.dropboxapi.com"
    try:
        result = flow.finish(code)
    except requests.HTTPError as exc:
        raise _token_error(exc.response, opts) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ConnectError(
            f"Dropbox OAuth token endpoint unreachable at {where} ({type(exc).__name__}): "
            "check the network path and --api-base-url"
        ) from None
    except (ValueError, KeyError) as exc:  # a 200 that is not the token JSON promised
        raise ConnectError(
            f"Dropbox OAuth token endpoint at {where} answered an unexpected body "
            f"({type(exc).__name__}): check --api-base-url"
        ) from None
    _mask(result.access_token, result.refresh_token)
    if not result.refresh_token:
        raise ConnectError(
            "Dropbox returned no refresh token (offline access): the app must allow "
            "short-lived tokens with refresh; check the app's settings and connect again"
        )
    return result


def _token_error(response: requests.Response | None, opts: ConnectOptions) -> ConnectError:
    status = response.status_code if response is not None else 0
    error, description = "", ""
    if response is not None:
        try:
            body = response.json()
            error = str(body.get("error", ""))
            description = str(body.get("error_description", ""))
        except ValueError:
            pass
    description = _scrub(description, opts)[:200]
    if error == "invalid_grant":
        return ConnectError(
            f"Dropbox rejected the authorization code (invalid_grant: {description or 'unknown'})"
            ": codes are single-use, expire after minutes and belong to one link; run the "
            "command again and use the code of the new link"
        )
    if error in ("invalid_client", "unauthorized_client") or status == 401:
        what = "app key" if opts.pkce else "app key / app secret"
        return ConnectError(
            f"Dropbox rejected the {what} ({error or f'HTTP {status}'}): copy them again from "
            "the App Console (Settings tab)"
            + ("; for --pkce the app must allow public clients (PKCE)" if opts.pkce else "")
        )
    if error == "invalid_request" and opts.pkce:
        return ConnectError(
            f"Dropbox refused the PKCE exchange (invalid_request: {description}): run the whole "
            "flow in one `connect` run (the code belongs to this run's link)"
        )
    return ConnectError(
        f"Dropbox OAuth token endpoint answered HTTP {status}"
        + (f" ({error}: {description})" if error else "")
        + ": try again later; if it persists check --api-base-url"
    )


def build_connection(
    opts: ConnectOptions,
    refresh_token: str,
    *,
    team_id: str | None = None,
    team_name: str | None = None,
    connected_at: str | None = None,
    extra_keep: dict[str, Any] | None = None,
) -> Any:
    """The connection as Airflow's Task SDK sees it (not saved): the exact contract fields."""
    from airflow.sdk import Connection

    extra: dict[str, Any] = dict(extra_keep or {})
    extra["refresh_token"] = refresh_token
    for key, value in (
        ("connected_at", connected_at),
        ("team_id", team_id),
        ("team_name", team_name),
    ):
        if value is not None:
            extra[key] = value
    return Connection(
        conn_id=opts.conn_id,
        conn_type=CONN_TYPE,
        login=opts.app_key,
        password=opts.app_secret,
        host=opts.base_url,
        extra=json.dumps(extra),
    )


def verify_connection(conn: Any) -> tuple[bool, str]:
    """Exactly what the UI's Test button runs, on a connection that is not saved (yet).

    `airflow.sdk.Connection.test_connection()` resolves the hook from the provider registry
    and lets the hook look this very connection up by id, so the connect command reuses the
    hook's own test rather than a second implementation.
    """
    return conn.test_connection()


def fetch_team_info(conn: Any) -> dict:
    """`team/get_info` through the hook, reading the in-memory connection."""
    from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook

    hook = DropboxTeamHook(dropbox_team_conn_id=conn.conn_id)
    # The instance attribute shadows the classmethod: this hook reads `conn`, not a backend.
    hook.get_connection = lambda _conn_id: conn  # type: ignore[method-assign]
    return hook.get_team_info()


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
    _mask(opts.app_secret)  # imports Airflow: after the early exit above, which needs none
    existing = load_saved(opts.conn_id) if opts.save else None  # fail fast if the DB is not ready
    if existing is not None and existing.conn_type != CONN_TYPE:
        raise ConnectError(
            f"Airflow connection '{opts.conn_id}' exists with type '{existing.conn_type}', not "
            f"'{CONN_TYPE}': pick another --conn-id or delete it first"
        )

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

    candidate = build_connection(opts, tokens.refresh_token)
    ok, message = verify_connection(candidate)
    if not ok:
        raise ConnectError(f"Connection test failed, nothing saved: {message}")
    info = fetch_team_info(candidate)
    team_id, team_name = str(info.get("team_id", "")), str(info.get("name", ""))

    now = to_wire(int(time.time()))
    connected_at, kept = now, False
    old_extra: dict[str, Any] = {}
    if existing is not None:
        old_extra = _extra_of(existing)
        same_team = bool(team_id) and old_extra.get("team_id") == team_id
        if same_team and old_extra.get("connected_at") and not opts.reset_connected_at:
            connected_at, kept = _normalized_connected_at(old_extra["connected_at"], now)
    keep = {k: v for k, v in old_extra.items() if k == "timeout"}
    final = build_connection(
        opts,
        tokens.refresh_token,
        team_id=team_id,
        team_name=team_name,
        connected_at=connected_at,
        extra_keep=keep,
    )
    created = False
    if opts.save:
        created = save_connection(final)
    return ConnectResult(
        conn_id=opts.conn_id,
        team_id=team_id,
        team_name=team_name,
        licensed_users=info.get("num_licensed_users"),
        connected_at=connected_at,
        saved=opts.save,
        created=created,
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


# --- the metadata DB -------------------------------------------------------------------------


def load_saved(conn_id: str) -> Any:
    """The connection row in the metadata DB, or None (env-var connections are not rows)."""
    from sqlalchemy import select

    Connection = _orm_connection()
    with _db_session() as session:
        row = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        if row is not None:
            session.expunge(row)
        return row


def save_connection(conn: Any) -> bool:
    """Insert or update in place (same row id, so references and audit logs stay); True if new."""
    from sqlalchemy import select

    Connection = _orm_connection()
    with _db_session() as session:
        row = session.scalar(select(Connection).where(Connection.conn_id == conn.conn_id))
        created = row is None
        if row is None:
            row = Connection(conn_id=conn.conn_id, conn_type=CONN_TYPE)
            row.description = "Dropbox team activity log (written by dropbox-team-log connect)"
            session.add(row)
        row.conn_type = CONN_TYPE
        row.host = conn.host or None
        row.login = conn.login
        row.password = conn.password or None
        row.schema = None
        row.port = None
        row.set_extra(conn.extra)
    return created


def _orm_connection() -> Any:
    """The metadata-DB model of a connection.

    The Task SDK's `Connection` (what AIR311 suggests) cannot be written to the DB; this CLI
    runs on the Airflow host, outside any task, like `airflow connections add` does.
    """
    from airflow.models.connection import Connection

    return Connection


@contextmanager
def _db_session() -> Generator[Any, None, None]:
    """`create_session()` with the failure admins hit (no or old DB) turned into a clear message."""
    from airflow.utils.session import create_session
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with create_session() as session:
            yield session
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None


def _is_db_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(exc, SQLAlchemyError)


def _db_error(exc: BaseException) -> Exception:
    if not _is_db_error(exc):
        return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
    # First line, before any "[SQL: ...]" / "[parameters: ...]" (which could hold a secret).
    first = (str(exc).splitlines() or [type(exc).__name__])[0].split("[SQL:")[0].strip()[:200]
    return ConnectError(
        f"Airflow metadata DB not usable ({first}): check AIRFLOW_HOME / "
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN and run `airflow db migrate`"
    )


def _extra_of(row: Any) -> dict[str, Any]:
    try:
        value = json.loads(row.extra) if row.extra else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- test-connection -------------------------------------------------------------------------


def verify_saved(conn_id: str) -> tuple[bool, str]:
    """Test a saved connection the way `airflow connections test` does (env var, then DB)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        found = _orm_connection().get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return False, (
            f"Connection '{conn_id}' not found (neither AIRFLOW_CONN_{conn_id.upper()} nor the "
            f"metadata DB): run `dropbox-team-log connect --conn-id {conn_id}`"
        )
    except Exception as exc:
        if _is_db_error(exc):
            return False, str(_db_error(exc))
        raise
    conn = Connection(
        conn_id=conn_id,
        conn_type=found.conn_type,
        host=found.host,
        login=found.login,
        password=found.password,
        schema=found.schema,
        port=found.port,
        extra=found.extra,
    )
    if conn.conn_type != CONN_TYPE:
        return False, (f"Connection '{conn_id}' has type '{conn.conn_type}', not '{CONN_TYPE}'")
    return verify_connection(conn)


# --- CLI handlers ----------------------------------------------------------------------------


def connect_command(args: argparse.Namespace) -> int:
    _quiet_libraries()
    try:
        opts = options_from_args(args)
        result = run_connect(opts, read_code=_prompt_code if _isatty(sys.stdin) else None)
    except UsageError as exc:
        print(f"dropbox-team-log connect: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DropboxTeamLogError as exc:
        print(f"dropbox-team-log connect: failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (KeyboardInterrupt, EOFError):
        print("\ndropbox-team-log connect: interrupted, nothing saved", file=sys.stderr)
        return EXIT_FAILURE
    print(_success(result))
    return EXIT_OK


def check_connection_command(args: argparse.Namespace) -> int:
    _quiet_libraries()
    ok, message = verify_saved(args.conn_id)
    if ok:
        print(f"OK: {message}")
        return EXIT_OK
    print(f"FAILED: {message}", file=sys.stderr)
    return EXIT_FAILURE


# --- helpers ---------------------------------------------------------------------------------


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
        conf = (
            ""
            if result.conn_id == DEFAULT_CONN_ID
            else f' --conf \'{{"conn_id": "{result.conn_id}"}}\''
        )
        lines += [
            "",
            "Next steps:",
            f"  dropbox-team-log test-connection --conn-id {result.conn_id}",
            f"  airflow dags unpause {BACKFILL_DAG_ID} && "
            f"airflow dags trigger {BACKFILL_DAG_ID}{conf}",
            f"     (loads the days before connected_at; the incremental DAG {INCREMENTAL_DAG_ID}",
            "      takes over from connected_at once unpaused: "
            f"airflow dags unpause {INCREMENTAL_DAG_ID})",
        ]
    else:
        lines.append(
            "--no-save: the connection was tested but not saved; the tokens are discarded."
        )
    return "\n".join(lines)


def _prompt_code(url: str) -> str:
    return input("Authorization code: ")


def _isatty(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def _mask(*secrets: str | None) -> None:
    """Register secrets with Airflow's masker: any log line carrying one shows *** instead."""
    values = [s for s in secrets if s]
    if not values:
        return
    from airflow.sdk.log import mask_secret

    for value in values:
        mask_secret(value)


def _scrub(text: str, opts: ConnectOptions) -> str:
    for secret in (opts.app_secret,):
        if secret:
            text = text.replace(secret, "***")
    return text


def _quiet_libraries() -> None:
    """Keep the CLI's own lines the report: no per-request INFO lines from the SDK, and not
    Airflow's warning that `dropbox_team` is no RFC 3986 URI scheme (the URI round trip is
    exact). Set before Airflow is imported, through its own `[logging] namespace_levels`."""
    for name in ("dropbox", "urllib3"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:  # an explicit level (a test, a user) wins
            logger.setLevel(logging.WARNING)
    if "airflow" not in sys.modules:
        os.environ.setdefault(
            "AIRFLOW__LOGGING__NAMESPACE_LEVELS", "airflow.models.connection=error"
        )


__all__ = [
    "ConnectError",
    "ConnectOptions",
    "ConnectResult",
    "UsageError",
    "add_connect_parser",
    "add_test_parser",
    "build_connection",
    "check_connection_command",
    "connect_command",
    "fetch_team_info",
    "finish_flow",
    "options_from_args",
    "run_connect",
    "start_flow",
    "verify_connection",
    "verify_saved",
]
