"""DuckDB views over the event dataset: the analyst's questions, without JSON-path SQL.

The dataset keeps `assets`, `participants`, `details` and `raw_event` as JSON text because their
shapes differ between event types. The fields the usual audit questions need (which file, which
shared link, whose link, who outside the team, how a sign-in failed, whom an admin acted on) are
pulled out here, once, in the `events` view; the question views select from it:

| view | rows |
|---|---|
| `events` | every row, plus the extracted fields and the team's name |
| `teams` | one row per team: connection, team id and name, its events |
| `unauthenticated_access` | anonymous actors: shared links/files opened without signing in |
| `external_sharing` | content shared with, or used by, people outside the team (signed in) |
| `sign_ins` | `login_success` / `login_fail` / `sso_error` / `emm_error`, with outcome |
| `admin_actions` | actions by an admin actor or through an admin console / sign-in-as |

One deployment may collect several teams into one dataset (dataset/layout.py): the views span
them all (`team_id` on every row; `team_name` from the teams' cards, dataset/team_info.py), or
one team given `team=` (a connection id, team id or team name).

Field shapes were read from Dropbox's spec examples (`../shared/fixtures/`) and the emulator's
generated events. Column meanings: docs/querying.md and docs/data_dictionary.md.
"""

from __future__ import annotations

import logging
import shlex

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log.analytics import detections, ocsf
from dropbox_team_log.dataset import integrity, roots
from dropbox_team_log.dataset.team_info import TeamInfo, TeamInfoStore
from dropbox_team_log.schema import DAY_FILES_GLOB, READER_SCHEMA

log = logging.getLogger(__name__)

#: The question views, in the order `query --views` lists them (`events` first: the others use it).
VIEW_NAMES = (
    "events",
    "teams",
    "unauthenticated_access",
    "external_sharing",
    "sign_ins",
    "admin_actions",
)
#: The dataset's rows as read (no extraction); `events` builds on it.
SOURCE_VIEW = "dropbox_team_log_rows"
#: The columns of the teams' cards table (`dropbox_team_log_team_cards`).
CARD_FIELDS = ("conn_id", "team_id", "team_name", "files")
OUTSIDER_TYPES = ("non_team_member", "trusted_non_team_member")
SIGN_IN_TYPES = ("login_success", "login_fail", "sso_error", "emm_error")
ADMIN_ACCESS_METHODS = ("admin_console", "enterprise_console", "sign_in_as")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# One JSON path per field; `coalesce` where Dropbox names the same thing differently by kind
# (file/folder: display_name, file_id; Paper: doc_title, doc_id; showcase: showcase_title, ...).
EVENTS_SQL = """
SELECT
    r.*,
    json_extract_string(r.assets, '$[0].".tag"') AS asset_type,
    coalesce(
        json_extract_string(r.assets, '$[0].display_name'),
        json_extract_string(r.assets, '$[0].doc_title'),
        json_extract_string(r.assets, '$[0].showcase_title'),
        json_extract_string(r.assets, '$[0].folder_name')
    ) AS asset_name,
    coalesce(
        json_extract_string(r.assets, '$[0].path.contextual'),
        json_extract_string(r.assets, '$[0].path.namespace_relative.relative_path')
    ) AS asset_path,
    coalesce(
        json_extract_string(r.assets, '$[0].file_id'),
        json_extract_string(r.assets, '$[0].doc_id'),
        json_extract_string(r.assets, '$[0].showcase_id'),
        json_extract_string(r.assets, '$[0].folder_id')
    ) AS asset_id,
    json_extract_string(r.details, '$.shared_content_link') AS shared_link,
    coalesce(
        json_extract_string(r.details, '$.shared_link_owner.email'),
        json_extract_string(r.details, '$.shared_content_owner.email')
    ) AS content_owner_email,
    json_extract_string(r.details, '$.login_method.".tag"') AS login_method,
    json_extract_string(r.details, '$.error_details.user_friendly_message') AS error_message,
    json_extract_string(r.details, '$.error_details.technical_error_message') AS error_detail,
    json_extract_string(r.raw_event, '$.origin.access_method.end_user.".tag"') AS session_type,
    json_extract_string(r.raw_event, '$.context.email') AS context_email,
    json_extract_string(r.raw_event, '$.context.display_name') AS context_display_name,
    list_sort(list_distinct(list_concat(
        CASE WHEN r.actor_user_type IN ('non_team_member', 'trusted_non_team_member')
                  AND r.actor_email IS NOT NULL
             THEN [r.actor_email] ELSE []::VARCHAR[] END,
        coalesce(list_transform(
            list_filter(
                CAST(json_extract(r.participants, '$[*].user') AS JSON[]),
                lambda u: (u ->> '.tag') IN ('non_team_member', 'trusted_non_team_member')
            ),
            lambda u: u ->> 'email'
        ), []::VARCHAR[]),
        coalesce(
            json_extract_string(r.details, '$.external_users[*].user_identifier'),
            []::VARCHAR[]
        )
    ))) AS external_parties,
    list_transform(
        list_filter(
            CAST(json_extract(r.participants, '$[*]') AS JSON[]),
            lambda p: (p ->> '.tag') = 'group'
        ),
        lambda p: p ->> 'display_name'
    )[1] AS participant_group,
    t.team_name
FROM dropbox_team_log_rows AS r
LEFT JOIN (
    SELECT team_id, min(team_name) AS team_name FROM dropbox_team_log_team_cards
    WHERE team_id IS NOT NULL GROUP BY team_id
) AS t ON t.team_id = r.team_id
"""

#: Every team with a card or with rows (a dataset written before cards: ids only).
TEAMS_SQL = """
SELECT c.conn_id, coalesce(c.team_id, e.team_id) AS team_id, c.team_name,
       CASE WHEN c.conn_id IS NULL THEN NULL
            ELSE coalesce(c.files || '.', '') || 'events-HH.parquet' END AS files,
       coalesce(e.events, 0) AS events, e.first_event, e.last_event
FROM dropbox_team_log_team_cards AS c
FULL OUTER JOIN (
    SELECT team_id, count(*) AS events, min(timestamp) AS first_event,
           max(timestamp) AS last_event
    FROM dropbox_team_log_rows GROUP BY team_id
) AS e ON e.team_id = c.team_id
ORDER BY c.conn_id NULLS LAST, team_id
"""

UNAUTHENTICATED_ACCESS_SQL = """
SELECT timestamp, event_date, event_type, shared_link, asset_type, asset_name, asset_path,
       asset_id, content_owner_email, ip_address, country, region, city, session_type,
       team_id, team_name
FROM events
WHERE auth_status = 'unauthenticated'
"""

EXTERNAL_SHARING_SQL = """
SELECT timestamp, event_date, event_type, event_category,
       CASE WHEN actor_user_type IN ('non_team_member', 'trusted_non_team_member')
            THEN 'outsider_access' ELSE 'team_share' END AS direction,
       actor_type, actor_user_type, actor_email, actor_display_name, external_parties,
       asset_type, asset_name, asset_path, shared_link, content_owner_email,
       ip_address, country, team_id, team_name
FROM events
WHERE auth_status <> 'unauthenticated'
  AND (involve_non_team_member IS TRUE
       OR actor_user_type IN ('non_team_member', 'trusted_non_team_member')
       OR len(external_parties) > 0)
"""

SIGN_INS_SQL = """
SELECT timestamp, event_date, event_type,
       CASE WHEN event_type = 'login_success' THEN 'success' ELSE 'failure' END AS outcome,
       coalesce(actor_email, context_email) AS user_email,
       coalesce(actor_display_name, context_display_name) AS user_name,
       actor_type, actor_user_type, login_method, error_message, error_detail,
       ip_address, country, region, city, access_method, session_type, team_id, team_name
FROM events
WHERE event_type IN ('login_success', 'login_fail', 'sso_error', 'emm_error')
"""

ADMIN_ACTIONS_SQL = """
SELECT timestamp, event_date,
       CASE WHEN actor_type = 'admin' THEN actor_email END AS admin_email,
       CASE WHEN actor_type = 'admin' THEN actor_display_name END AS admin_name,
       actor_type, event_type, event_category, event_type_description,
       context_email AS target_email, participant_group AS target_group,
       access_method, ip_address, country, details, team_id, team_name
FROM events
WHERE actor_type = 'admin' OR access_method IN ('admin_console', 'enterprise_console', 'sign_in_as')
"""

VIEWS_SQL = {
    "events": EVENTS_SQL,
    "teams": TEAMS_SQL,
    "unauthenticated_access": UNAUTHENTICATED_ACCESS_SQL,
    "external_sharing": EXTERNAL_SHARING_SQL,
    "sign_ins": SIGN_INS_SQL,
    "admin_actions": ADMIN_ACTIONS_SQL,
}


def files_glob(root: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The dataset's filesystem and the glob of its day files (`_reports/` etc. never match),
    the root taken literally (a `[`, `*` or `?` in it matches itself only)."""
    fs, path = fsspec.core.url_to_fs(str(root))
    return fs, roots.glob_under(path, DAY_FILES_GLOB)


def connect(
    root: str, con: duckdb.DuckDBPyConnection | None = None, *, team: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (new, or `con`) with the views defined over the dataset at `root`.

    `root` is a local path or an fsspec URL (`s3://bucket/prefix`, ...): a non-local filesystem
    is registered with DuckDB, so no DuckDB extension has to be downloaded. Times show in UTC.
    The file list is read when a query runs; a dataset with no file yet gives empty views.
    Every team's rows, or with `team` (a connection id, team id or team name: see
    `resolve_team`) that team's only, in every view.
    """
    con = con or duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cards = TeamInfoStore(str(root)).load_all()
    _register_cards(con, cards)
    fs, pattern = files_glob(root)
    files = fs.glob(pattern)
    if not files:
        source = _no_rows(con)
    else:
        if not isinstance(fs, LocalFileSystem):
            con.register_filesystem(fs)
            pattern = fs.unstrip_protocol(pattern)
        source = _read_parquet(_literal(pattern))
        source = _without_unreadable(con, fs, root, files, source)
    if team is not None:
        team_id = resolve_team(cards, team)
        where = f" WHERE team_id = {_literal(team_id)}"  # quoted: a view takes no parameters
        source = "SELECT * FROM (" + source + ")" + where  # ruff: ignore[hardcoded-sql-expression]
    con.execute(f"CREATE OR REPLACE VIEW dropbox_team_log_rows AS {source}")
    for name, sql in VIEWS_SQL.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
    detections.register(con)
    ocsf.register_view(con, SOURCE_VIEW)
    return con


def resolve_team(cards: list[TeamInfo], team: str) -> str:
    """The team id `team` names: a card's connection id, team id or team name (in that order),
    else `team` itself if it is a Dropbox team id (`dbtid:...`); ValueError listing the known
    teams otherwise."""
    for field in ("conn_id", "team_id", "team_name"):
        found = {c.team_id for c in cards if getattr(c, field) == team and c.team_id}
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            raise ValueError(f"{field} {team!r} names several teams: give a team id instead")
    if team.startswith("dbtid:"):
        return team
    known = ", ".join(f"{c.conn_id} ({c.team_name or c.team_id or '?'})" for c in cards)
    raise ValueError(
        f"no team {team!r} in this dataset: give a connection id, team id or team name"
        + (f" (teams: {known})" if known else " (it has no team cards: give a team id)")
    )


def _register_cards(con: duckdb.DuckDBPyConnection, cards: list[TeamInfo]) -> None:
    """The teams' cards as the table the `teams` and `events` views join."""
    table = pa.table(
        {name: pa.array([getattr(c, name) for c in cards], pa.string()) for name in CARD_FIELDS}
    )
    con.register("_dropbox_team_log_cards", table)
    con.execute(
        "CREATE OR REPLACE TABLE dropbox_team_log_team_cards AS "
        "SELECT * FROM _dropbox_team_log_cards"
    )
    con.unregister("_dropbox_team_log_cards")


def _no_rows(con: duckdb.DuckDBPyConnection) -> str:
    """The rows of a dataset with no (readable) file: an empty table of the readers' schema."""
    con.register("_dropbox_team_log_arrow", READER_SCHEMA.empty_table())
    con.execute(
        "CREATE OR REPLACE TABLE dropbox_team_log_empty AS SELECT * FROM _dropbox_team_log_arrow"
    )
    con.unregister("_dropbox_team_log_arrow")
    return "SELECT * FROM dropbox_team_log_empty"


def _read_parquet(files_sql: str) -> str:
    """The rows of these files (a quoted glob or a list of quoted paths), `event_date` added."""
    return (
        "SELECT * FROM read_parquet("  # ruff: ignore[hardcoded-sql-expression] (quoted)
        + files_sql
        + ", hive_partitioning = true, hive_types = {'event_date': DATE})"
    )


def _without_unreadable(
    con: duckdb.DuckDBPyConnection,
    fs: fsspec.AbstractFileSystem,
    root: str,
    files: list[str],
    source: str,
) -> str:
    """`source`, unless a day file's footer cannot be read: then the readable files only.

    Counting rows reads every footer and nothing else. A damaged day file is moved aside by the
    pipeline as soon as a sync reads it, but until then it would fail every query: it is left
    out here, and named with the command that moves it aside. The file list is then fixed for
    this connection. Bytes damaged inside a page are not seen here: DuckDB does not verify page
    checksums, `dropbox-team-log verify` does.
    """
    try:
        con.execute("SELECT count(*) FROM (" + source + ")")  # ruff: ignore[hardcoded-sql-expression]
        return source
    except duckdb.Error:
        pass
    readable, unreadable = [], []
    for path in files:
        try:
            with fs.open(path, "rb") as f:
                pq.read_metadata(f)
        except integrity.READ_ERRORS as exc:
            if not integrity.may_be_damage(exc):
                raise
            unreadable.append(path)
        else:
            readable.append(path)
    if not unreadable:
        return source  # not a file's fault: the query will say what it is
    log.warning(
        "left out %d damaged day file(s) that cannot be read: %s; move them aside with "
        "`dropbox-team-log verify --root %s --quarantine` (their days are then fetched again)",
        len(unreadable),
        ", ".join(unreadable),
        shlex.quote(str(root)),
    )
    if not isinstance(fs, LocalFileSystem):
        readable = [fs.unstrip_protocol(path) for path in readable]
    if not readable:
        return _no_rows(con)
    return _read_parquet("[" + ", ".join(_literal(roots.literal(p)) for p in readable) + "]")


def view_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """(column, type) of each question view, for `query --views` and the docs."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name in VIEW_NAMES:
        rel = con.sql("SELECT * FROM " + name + " LIMIT 0")  # ruff: ignore[hardcoded-sql-expression]
        out[name] = [(col, str(typ)) for col, typ in zip(rel.columns, rel.types, strict=True)]
    return out
