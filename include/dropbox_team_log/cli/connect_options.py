"""What one `dropbox-team-log connect` run is given, checked before any network call.

Also the command's two errors, which its handler maps to exit codes: UsageError (bad or missing
input, exit 2) and ConnectError (the flow failed, exit 1).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from dropbox_team_log.client.transport import normalize_base_url
from dropbox_team_log.errors import DropboxTeamLogError
from dropbox_team_log.settings import APP_SECRET_ENV, DEFAULT_CONN_ID

_CONN_ID_RE = re.compile(r"^[\w.-]{1,200}$")


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
            if not is_terminal(stdin):
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


def is_terminal(stream: TextIO | None) -> bool:
    """Whether `stream` is an interactive terminal (something can be prompted for)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False
