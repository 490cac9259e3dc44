"""Detections as SQL: one `detect_*` DuckDB view per thing security teams hunt for in the log.

Each view reads `detection_input` (the rows of `events` the detections look at) and returns one
row per finding, in one shape: `finding_id` (a hash of the detection and its evidence keys: the
same evidence always gives the same id, so a finding is raised once however often its days are
re-read), `detection`, `severity`, `technique` (MITRE ATT&CK), `team_id`, `first_seen`,
`last_seen`, `actor`, `asset`, `events` (rows behind it, genuine duplicates counted) and
`evidence` (JSON text). `detection_findings` is all of them together.

Each detection's SQL is a function of detection_rules.py whose docstring says what it finds,
why it matters, its ATT&CK technique and its false positives (docs/detections.md says the same).
Thresholds, windows and allowlists are `DetectionConfig` (defaults: `settings.DETECTION_DEFAULTS`,
overridden by the Airflow Variable `dropbox_team_log_detections` and by CLI flags). Windows are
tumbling, aligned to UTC midnight: a burst is counted in the window its events fall in. Event
types and field paths are those of Dropbox's spec examples (the emulator's fixture).
"""

# ruff: file-ignore[hardcoded-sql-expression] (only checked numbers and quoted strings go in)

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import duckdb

from dropbox_team_log.analytics import detection_rules as rules
from dropbox_team_log.analytics.detection_config import DetectionConfig, DetectionConfigError
from dropbox_team_log.analytics.detection_rules import INPUT_VIEW, sql_in, sql_literal

__all__ = ["DETECTIONS", "Detection", "DetectionConfig", "DetectionConfigError", "register"]

ALL_VIEW = "detection_findings"
#: Columns of `events` the detections read (the JSON-heavy rest is never computed for them).
INPUT_COLUMNS = (
    "timestamp, event_date, event_type, team_id, auth_status, actor_type, actor_user_type, "
    "actor_email, actor_display_name, actor_app_id, context_email, ip_address, country, city, "
    "access_method, involve_non_team_member, asset_id, asset_path, asset_name, shared_link, "
    "content_owner_email, details, participants"
)


@dataclass(frozen=True)
class Detection:
    """A detection: its view name, what the alert calls it, its ATT&CK technique, its SQL."""

    name: str
    title: str
    technique: str
    sql: Callable[[DetectionConfig], str]
    event_types: tuple[str, ...] = ()


DETECTIONS = (
    Detection(
        "detect_admin_sign_in_as",
        "Admin signed in as a member",
        "T1078.004",
        rules.admin_sign_in_as,
        ("sign_in_as_session_start",),
    ),
    Detection(
        "detect_tfa_disabled",
        "Two-step verification disabled",
        "T1556.006",
        rules.tfa_disabled,
        ("tfa_change_status",),
    ),
    Detection(
        "detect_app_linked", "Team-linked app added", "T1528", rules.app_linked, ("app_link_team",)
    ),
    Detection(
        "detect_ownership_transfer",
        "Ownership transferred",
        "T1222",
        rules.ownership_transfer,
        rules.TRANSFER_TYPES,
    ),
    Detection(
        "detect_external_share",
        "Shared outside the team",
        "T1537",
        rules.external_share,
        rules.SHARE_TYPES,
    ),
    Detection(
        "detect_mass_download", "Mass download", "T1530", rules.mass_download, rules.DOWNLOAD_TYPES
    ),
    Detection("detect_mass_delete", "Mass delete", "T1485", rules.mass_delete, rules.DELETE_TYPES),
    Detection(
        "detect_anonymous_link_burst",
        "Link opened without signing in from many places",
        "T1567",
        rules.anonymous_link_burst,
    ),
    Detection(
        "detect_login_brute_force",
        "Many failed sign-ins",
        "T1110",
        rules.login_brute_force,
        ("login_fail", "login_success"),
    ),
    Detection(
        "detect_new_country_sign_in",
        "Sign-in from a new country",
        "T1078.004",
        rules.new_country_sign_in,
        ("login_success",),
    ),
)
BY_NAME = {d.name: d for d in DETECTIONS}
#: The finding's columns, in order (every detect_* view has exactly these).
FINDING_COLUMNS = (
    "finding_id",
    "detection",
    "severity",
    "technique",
    "team_id",
    "first_seen",
    "last_seen",
    "actor",
    "asset",
    "events",
    "evidence",
)


def detection_sql(detection: Detection, cfg: DetectionConfig) -> str:
    """The view's SQL: the detection's rows in the finding shape, with their finding_id."""
    name = sql_literal(detection.name)
    return f"""
SELECT substr(sha256({name} || chr(30) || dedup_key), 1, 32) AS finding_id,
       {name} AS detection, severity, {sql_literal(detection.technique)} AS technique, team_id,
       first_seen, last_seen, CAST(actor AS VARCHAR) AS actor, CAST(asset AS VARCHAR) AS asset,
       events, CAST(evidence AS VARCHAR) AS evidence
FROM ({detection.sql(cfg)}) AS found
"""


def input_sql(days: tuple[date | None, date | None] = (None, None)) -> str:
    """The rows of `events` some detection reads, optionally only those of days [lo, hi]."""
    types = sorted({t for d in DETECTIONS for t in d.event_types})
    where = f"(event_type IN {sql_in(types)} OR auth_status = 'unauthenticated')"
    lo, hi = days
    if lo is not None:
        where += f" AND event_date >= DATE '{lo.isoformat()}'"
    if hi is not None:
        where += f" AND event_date <= DATE '{hi.isoformat()}'"
    return f"SELECT {INPUT_COLUMNS} FROM events WHERE {where}"


def register(
    con: duckdb.DuckDBPyConnection,
    cfg: DetectionConfig | None = None,
    *,
    days: tuple[date | None, date | None] | None = None,
) -> None:
    """Define `detection_input`, the detect_* views and `detection_findings` on `con`.

    `con` has the `events` view (analytics/views.py). Without `days`, `detection_input` is a
    view over every row (what `query` shows); with `days`, a table of those days' rows, read
    once for all detections (what the evaluation of changed days uses).
    """
    cfg = cfg or DetectionConfig()
    existing = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = ?", [INPUT_VIEW]
    ).fetchall()
    for (kind,) in existing:
        con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {INPUT_VIEW}")
    if days is None:
        con.execute(f"CREATE VIEW {INPUT_VIEW} AS {input_sql()}")
    else:
        con.execute(f"CREATE TABLE {INPUT_VIEW} AS {input_sql(days)}")
    for detection in DETECTIONS:
        con.execute(f"CREATE OR REPLACE VIEW {detection.name} AS {detection_sql(detection, cfg)}")
    union = " UNION ALL ".join(f"SELECT * FROM {d.name}" for d in DETECTIONS)
    con.execute(f"CREATE OR REPLACE VIEW {ALL_VIEW} AS {union}")
