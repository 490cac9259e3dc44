"""What `connect` writes in Airflow: the connection (built in memory, tested, then saved in the
DB), the `dropbox_api` pool the sync tasks wait for, and Variables (the teams registry).

The test is the one the UI's Test button runs (the hook's own), on a connection that is not
saved yet, so nothing is written unless it passes. Saving updates an existing row in place, so
its id, references and audit log stay. The CLI runs on the Airflow host, outside any task, and
writes the metadata DB as `airflow connections add` does; a DB that is missing or not migrated
becomes a ConnectError that says what to run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

from dropbox_team_log.cli.connect_options import ConnectError, ConnectOptions
from dropbox_team_log.settings import CONN_TYPE


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
        # 0, not empty: Airflow 3.3.2's Test button sends port 0 for a connection without one
        # and refuses the test when the stored port differs. The hook reads 0 as "no port".
        row.port = 0
        row.set_extra(conn.extra)
    return created


def ensure_pool(name: str, slots: int, description: str) -> bool:
    """Create the pool if it is missing (without it the sync tasks wait forever, silently);
    an existing pool is left as it is. True if created."""
    from airflow.models.pool import Pool
    from sqlalchemy import select

    with _db_session() as session:
        if session.scalar(select(Pool).where(Pool.pool == name)) is not None:
            return False
        session.add(Pool(pool=name, slots=slots, description=description, include_deferred=False))
    return True


def load_variable(key: str) -> tuple[str | None, str | None]:
    """The Variable as the DAGs read it (environment, secrets backends, then the DB) and as the
    metadata DB holds it: they differ when another backend defines it (and wins)."""
    from airflow.models.variable import Variable
    from sqlalchemy import select

    with _db_session() as session:
        row = session.scalar(select(Variable).where(Variable.key == key))
        stored = row.val if row is not None else None
    try:
        seen = Variable.get_variable_from_secrets(key)
    except Exception as exc:
        raise _db_error(exc) from None
    return seen, stored


def save_variable(key: str, value: str, description: str) -> None:
    """Insert or update the Variable in the metadata DB (encrypted as Airflow does)."""
    from airflow.models.variable import Variable
    from sqlalchemy import select

    with _db_session() as session:
        row = session.scalar(select(Variable).where(Variable.key == key))
        if row is None:
            session.add(Variable(key=key, val=value, description=description))
        else:
            row.set_val(value)


def connection_extra(conn_id: str) -> dict[str, Any] | None:
    """The extra of a connection as the DAGs find it (any secrets backend), or None when no
    backend has it."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        found = _orm_connection().get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as exc:
        raise _db_error(exc) from None
    return extra_of(found)


def dag_paused(dag_id: str) -> bool | None:
    """Whether the DAG is paused; None when the dag-processor has not recorded it yet."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    with _db_session() as session:
        return session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id))


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


#: For the readers beside the CLI (the teams page): the same session, the same clear failure.
db_session = _db_session


def _is_db_error(exc: BaseException) -> bool:
    """Whether `exc` comes from the metadata DB (SQLAlchemy is imported only when asked)."""
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(exc, SQLAlchemyError)


def _db_error(exc: BaseException) -> Exception:
    """A DB failure as a ConnectError that says what to run; any other error as it is."""
    if not _is_db_error(exc):
        return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
    # First line, before any "[SQL: ...]" / "[parameters: ...]" (which could hold a secret).
    first = (str(exc).splitlines() or [type(exc).__name__])[0].split("[SQL:")[0].strip()[:200]
    return ConnectError(
        f"Airflow metadata DB not usable ({first}): check AIRFLOW_HOME / "
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN and run `airflow db migrate`"
    )


def extra_of(row: Any) -> dict[str, Any]:
    """A saved row's extra as a dict; {} when it is empty or not a JSON object."""
    try:
        value = json.loads(row.extra) if row.extra else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


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


def quiet_libraries() -> None:
    """Keep the CLI's own lines its output: no per-request INFO lines from the SDK, and not
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
