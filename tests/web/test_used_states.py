"""web/used_states.py: an OAuth state is accepted once across processes, on SQLite (the tests'
and the demo's metadata DB) and PostgreSQL (production's), expired records go, and a DB that
does not answer refuses the callback.

Each "api-server worker" here is a separate OS process (spawned: nothing shared but the DB)
running the page's own Guard on the same database.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import MetaData, Table, create_engine, func, select, text

from dropbox_team_log.settings import OAUTH_STATE_TABLE
from dropbox_team_log.web.guard import FlowRejected, Guard, state_key
from dropbox_team_log.web.used_states import CLOCK_SLACK_SECONDS, DbUsedStates
from tests.helpers.pending_flows import pending_flow

SECRET = "api-secret-key-shared-by-the-workers"
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432"
FLOW = pending_flow(state="state-of-one-flow")


def open_in_a_worker(db_url: str, sealed: str, state: str) -> str:
    """In a worker process: its own Guard opens the callback's flow; what it answered."""
    guard = Guard(SECRET, used=DbUsedStates(create_engine(db_url)))
    try:
        guard.open_flow(sealed, state, FLOW.user_id, FLOW.browser_id)
    except FlowRejected as exc:
        return f"refused: {exc}"
    return "accepted"


def claim_all(db_url: str, states: list[str], start: multiprocessing.Barrier) -> list[str]:
    """In a worker process: claim every state (in the order given), once connected and once
    the other worker is ready too; the states it won."""
    used = DbUsedStates(create_engine(db_url))
    assert used.claim(f"warm-up-{os.getpid()}", 1_800_000_000.0, 600)  # table made, connected
    start.wait(timeout=120)
    return [s for s in states if used.claim(s, 1_800_000_000.0, 600)]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metadata.db'}"
        return
    name = f"dtl_states_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{PG_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_URL}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def spawn() -> multiprocessing.context.SpawnContext:
    return multiprocessing.get_context("spawn")


def test_a_callback_accepted_by_one_worker_is_refused_by_another(db_url):
    sealed = Guard(SECRET).seal_flow(FLOW)
    answers = []
    for _ in range(2):  # one process each: the second shares nothing with the first but the DB
        with spawn().Pool(1) as worker:
            answers.append(worker.apply(open_in_a_worker, (db_url, sealed, FLOW.state)))
    assert answers[0] == "accepted"
    assert answers[1] == "refused: this authorization was used already: start again"
    # What the record keeps is the state's hash, never the state.
    engine = create_engine(db_url)
    table = Table(OAUTH_STATE_TABLE, MetaData(), autoload_with=engine)  # as the DB has it
    with engine.connect() as conn:
        rows = conn.execute(select(table.c.state_hash)).scalars().all()
    assert rows == [state_key(FLOW.state)] and FLOW.state not in rows[0]


def test_two_workers_racing_on_the_same_states_each_win_a_state_once(db_url):
    states = [f"state-{i}" for i in range(200)]
    ctx = spawn()
    start = ctx.Manager().Barrier(2)
    with ctx.Pool(2) as workers:
        # Opposite orders: the two meet somewhere in the middle, whatever their speeds.
        pending = [
            workers.apply_async(claim_all, (db_url, order, start))
            for order in (states, states[::-1])
        ]
        won = [p.get(timeout=300) for p in pending]
    assert sorted(won[0] + won[1]) == sorted(states), "a state was accepted twice or never"


def test_records_expire_after_the_flow_lifetime_and_its_slack(db_url):
    engine = create_engine(db_url)
    used = DbUsedStates(engine)
    table = used._table
    t0 = 1_800_000_000.0
    assert used.claim("a", t0, 600)
    assert not used.claim("a", t0 + 600 + CLOCK_SLACK_SECONDS, 600)  # kept for the slack too
    later = t0 + 600 + CLOCK_SLACK_SECONDS + 1
    assert used.claim("b", later, 600)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(table)).scalar() == 1  # "a" went
    assert used.claim("a", later, 600)  # (its flow is refused as expired long before this)


def test_a_db_that_does_not_answer_refuses_the_callback():
    used = DbUsedStates(create_engine("postgresql+psycopg2://postgres@127.0.0.1:9/nowhere"))
    guard = Guard(SECRET, used=used)
    with pytest.raises(FlowRejected, match="could not reach the metadata DB"):
        guard.open_flow(guard.seal_flow(FLOW), FLOW.state, FLOW.user_id, FLOW.browser_id)
