"""Provider metadata: what makes `dropbox_team` a connection type in Airflow.

Airflow finds this through the `apache_airflow_provider` entry point in pyproject.toml. The form
is declared here (Airflow 3.2+ `conn-fields` / `ui-field-behaviour`), not through the deprecated
hook methods, so the API server can render the form without importing the hook (and the SDK).
Only plain literals (and `settings`, which imports nothing): every `airflow` process imports this
at start-up.
"""

from __future__ import annotations

from typing import Any

from dropbox_team_log.settings import CONN_TYPE

#: Must equal the distribution name (Airflow compares it to the installed package's metadata).
PACKAGE_NAME = "dropbox-team-log"
HOOK_CLASS_NAME = "dropbox_team_log.hooks.dropbox_team.DropboxTeamHook"
HOOK_NAME = "Dropbox Team"
INTEGRATION = "Dropbox Business team activity log"


def _conn_fields() -> dict[str, dict[str, Any]]:
    """Extra fields of the connection form; the names are the keys of `Connection.extra`."""
    return {
        "refresh_token": {
            "label": "Refresh token",
            "schema": {"type": ["string", "null"], "format": "password"},
            "description": (
                "The team admin's offline OAuth grant. Set by `dropbox-team-log connect`; "
                "never typed by hand."
            ),
        },
        "connected_at": {
            "label": "Connected at (UTC)",
            "schema": {"type": ["string", "null"]},
            "description": (
                "ISO-8601 UTC time the team was first connected, e.g. 2026-11-28T09:00:00Z. "
                "The backfill ends and the incremental schedule starts here: do not change it "
                "on a reconnect."
            ),
        },
        "team_id": {
            "label": "Team id",
            "schema": {"type": ["string", "null"]},
            "description": "Dropbox team id (dbtid:...), recorded when connecting.",
        },
        "team_name": {
            "label": "Team name",
            "schema": {"type": ["string", "null"]},
            "description": "Dropbox team name, recorded when connecting (informational).",
        },
        "timeout": {
            "label": "HTTP timeout (seconds)",
            "schema": {"type": ["number", "null"], "default": 60},
            "description": "Per-request timeout for API calls.",
        },
    }


def _ui_field_behaviour() -> dict[str, Any]:
    return {
        "hidden-fields": ["schema", "port"],
        "relabeling": {
            "login": "App key",
            "password": "App secret",
            "host": "API base URL (optional)",
        },
        "placeholders": {
            "login": "App key from the App Console (Settings tab)",
            "password": "App secret; leave empty for a PKCE connection",
            "host": "empty = Dropbox; http://127.0.0.1:8765 = local emulator",
            "refresh_token": "written by `dropbox-team-log connect`",
            "connected_at": "2026-11-28T09:00:00Z",
            "team_id": "dbtid:...",
            "timeout": "60",
        },
    }


def get_provider_info() -> dict[str, Any]:
    """The dict Airflow validates against its provider_info schema."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Dropbox Team Log",
        "description": (
            "Reads a Dropbox Business team's activity log with an offline refresh token, "
            "into hive-partitioned Parquet."
        ),
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": (
                    "https://www.dropbox.com/developers/documentation/http/teams#team_log-get_events"
                ),
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["dropbox_team_log.hooks.dropbox_team"],
            }
        ],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": HOOK_CLASS_NAME,
                "hook-name": HOOK_NAME,
                "conn-fields": _conn_fields(),
                "ui-field-behaviour": _ui_field_behaviour(),
            }
        ],
    }
