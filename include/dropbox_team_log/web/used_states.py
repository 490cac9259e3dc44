"""The teams page's single-use record of OAuth `state`s, in Airflow's metadata DB.

Why there: the pending flow travels sealed in a cookie, so whichever api-server process gets
the callback can finish it: any of `airflow api-server --workers N`, any container or host of
the deployment. The record that a state was used must be seen by all of them, and the metadata
DB is the one store they all share. A file under AIRFLOW_HOME with flock would hold only for
the workers of one host: compose's api-server containers, or several hosts, each have their own.

How: one INSERT of the state's SHA-256 into a primary key. The DB makes it atomic (SQLite,
PostgreSQL, MySQL alike, no lock of ours): of two processes inserting the same state, one
commits and the other gets an IntegrityError, i.e. "used already". If the DB cannot be
reached (after a few tries: SQLite answers "database is locked" while another process writes)
the callback is refused (fail closed) and the state stays unused: start again or retry.

The table (OAUTH_STATE_TABLE: `state_hash`, `used_at` in epoch seconds) is this package's,
unknown to Airflow's migrations (`airflow db migrate` and `db reset` leave it alone): it is
created on first use when missing, never altered. Each claim first deletes the rows older than
the flow's lifetime plus CLOCK_SLACK_SECONDS: by then the sealed flow is refused as expired
before its state is looked up, so a forgotten row cannot let anything in; the slack covers
clocks of different hosts that disagree (Fernet itself accepts a minute ahead).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dropbox_team_log.settings import OAUTH_STATE_TABLE
from dropbox_team_log.web.guard import FlowRejected

log = logging.getLogger(__name__)

#: Kept this much longer than the flow's lifetime, for hosts whose clocks disagree.
CLOCK_SLACK_SECONDS = 300
#: Tries of a claim that the DB answered with an OperationalError (SQLite's "database is
#: locked" when another process writes, a connection dropped), waiting RETRY_SECONDS doubling.
ATTEMPTS = 5
RETRY_SECONDS = 0.1


def _table() -> Any:
    from sqlalchemy import Column, Float, MetaData, String, Table

    return Table(
        OAUTH_STATE_TABLE,
        MetaData(),  # not Airflow's: its migrations must not know this table
        Column("state_hash", String(64), primary_key=True),
        Column("used_at", Float, nullable=False, index=True),
    )


class DbUsedStates:
    """`guard.UsedStates` on an SQLAlchemy engine (default: the Airflow metadata DB's)."""

    def __init__(self, engine: Any = None) -> None:
        self._engine = engine
        self._table = _table()
        self._ready = False
        self._lock = threading.Lock()

    def _db(self) -> Any:
        if self._engine is None:
            from airflow import settings

            self._engine = settings.get_engine()
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._create_table()
                    self._ready = True
        return self._engine

    def _create_table(self) -> None:
        from sqlalchemy import inspect
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._table.create(self._engine, checkfirst=True)
        except SQLAlchemyError:
            # Another process created it between the check and the CREATE: that is fine.
            if not inspect(self._engine).has_table(OAUTH_STATE_TABLE):
                raise
        log.debug("teams page: table %s ready", OAUTH_STATE_TABLE)

    def claim(self, state: str, now: float, keep: float) -> bool:
        from sqlalchemy import delete, insert
        from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

        table = self._table
        expired = table.c.used_at < now - keep - CLOCK_SLACK_SECONDS
        for attempt in range(ATTEMPTS):
            try:
                with self._db().begin() as conn:  # one transaction: all of it or nothing
                    conn.execute(delete(table).where(expired))
                    conn.execute(insert(table).values(state_hash=state, used_at=now))
                return True
            except IntegrityError:
                return False
            except OperationalError as exc:  # SQLite's "database is locked", a dropped link
                problem = exc
                log.warning(
                    "teams page: recording a used state failed (attempt %d): %s",
                    attempt + 1,
                    type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
                )
                time.sleep(RETRY_SECONDS * 2**attempt)
            except SQLAlchemyError as exc:
                problem = exc
                break
        raise FlowRejected(
            "the single-use check could not reach the metadata DB "
            f"({type(problem).__name__}): try the link again in a moment"
        ) from None
