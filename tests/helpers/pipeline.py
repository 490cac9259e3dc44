"""Shared by the pipeline tests: connect to the emulator, run DAGs for real, compare with truth.

Exactness is checked as multisets of events (parsed JSON, canonical form): two byte-identical
events are two entries, so a lost or an extra duplicate fails the comparison.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import dropbox
import orjson
import pyarrow.compute as pc
import pyarrow.dataset as ds

from dropbox_team_log.client.api import RetryPolicy, TeamApiClient
from dropbox_team_log.client.reader import EventPage, EventReader
from dropbox_team_log.client.transport import TokenWatch, build_session
from dropbox_team_log.settings import REQUIRED_SCOPES
from dropbox_team_log.timeutil import from_wire
from tests.helpers import paths

DAGS_FOLDER = str(paths.DAGS_FOLDER)


def canonical(raw: str | bytes) -> str:
    """One text per JSON value (keys sorted), whatever the spacing and key order of `raw`.
    orjson for speed (the suite canonicalises every event it compares); the stdlib for what
    orjson refuses (lone surrogates, integers beyond 64 bits, NaN)."""
    try:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS).decode()
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))


def multiset(raws: Iterable[str | bytes]) -> Counter:
    return Counter(canonical(raw) for raw in raws)


def grant_app(emu, team: int | str | None = None):
    """Grant the app through the emulator's Allow page, as an admin would (of `team`, an index
    or id; default: the first team): the OAuth result."""
    flow = dropbox.DropboxOAuth2FlowNoRedirect(
        emu.config.app_key,
        consumer_secret=emu.config.app_secret,
        token_access_type="offline",
        scope=list(REQUIRED_SCOPES),
    )
    flow.requests_session = build_session(emu.base_url)
    return flow.finish(emu.approve(flow.start(), team=team))


def reader_at(
    base_url: str,
    *,
    policy: RetryPolicy | None = None,
    timeout: float = 10,
    page_limit: int = 1000,
    max_restarts: int = 10,
    **credentials: str,
) -> EventReader:
    """An EventReader on the real SDK and transport against `base_url`, without the hook.

    The SDK's own retries are off and backoff does not sleep: only `TeamApiClient` retries.
    `credentials` go to `dropbox.DropboxTeam` (an access token, or refresh token + app key).
    """
    tokens = TokenWatch()
    client = dropbox.DropboxTeam(
        session=build_session(base_url, token_watch=tokens),
        max_retries_on_error=0,
        max_retries_on_rate_limit=0,
        timeout=timeout,
        **credentials,
    )
    api = TeamApiClient(
        client,
        conn_id="test",
        tokens=tokens,
        policy=policy or RetryPolicy(),
        sleep=lambda _: None,
    )
    return EventReader(api, page_limit=page_limit, max_restarts=max_restarts)


def parsed(page: EventPage) -> list[dict]:
    """A page's events as dicts."""
    return [orjson.loads(memoryview(event)) for event in page.events]


def read_events(reader: EventReader, start: int, end: int) -> list[dict]:
    """Every event of `[start, end)` as dicts, the reader's discards applied: what a consumer
    of the pages ends up with."""
    events: list[dict] = []
    for page in reader.iter_pages(start, end):
        if page.discard_from is not None:
            events = [e for e in events if from_wire(e["timestamp"]) < page.discard_from]
        events.extend(parsed(page))
    return events


def connection_json(
    emu, *, connected_at: datetime, backoff_base: float = 0.01, team: int | None = None
) -> str:
    """The connection the connect command saves after a grant (here as AIRFLOW_CONN_* JSON),
    granted by the admin of `team` (an index; default: the first team)."""
    grant = grant_app(emu, team)
    return json.dumps(
        {
            "conn_type": "dropbox_team",
            "login": emu.config.app_key,
            "password": emu.config.app_secret,
            "host": emu.base_url,
            "extra": {
                "refresh_token": grant.refresh_token,
                "connected_at": connected_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "team_id": grant.account_id or "",
                "team_name": "test",
                "backoff_base": backoff_base,
            },
        }
    )


def dataset_raws(root: str, lo: datetime, hi: datetime, team_id: str | None = None) -> list[str]:
    """raw_event of every row with lo <= timestamp < hi (of one team, given its id), read back
    with pyarrow (hive layout: every team's files)."""
    if not os.path.isdir(root):
        return []
    dataset = ds.dataset(root, format="parquet", partitioning="hive")
    where = (pc.field("timestamp") >= lo) & (pc.field("timestamp") < hi)
    if team_id is not None:
        where = where & (pc.field("team_id") == team_id)
    table = dataset.to_table(columns=["timestamp", "raw_event"], filter=where)
    return table.column("raw_event").to_pylist()


def fresh_dag(dag_id: str):
    """The DAG parsed anew, without Airflow retries: `dag.test(run_conf=...)` leaves the conf on
    the DAG object (it would leak into the next run; a deepcopy breaks mapped tasks), and
    dag.test() would sit out real retry delays (minutes) on a failure."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=DAGS_FOLDER).dags[dag_id]
    for task in dag.tasks:
        task.retries = 0
    return dag


def run_dag(emu, dag_id: str, at: datetime, conf: dict | None = None, *, expect: str = "success"):
    """One real DAG run at logical time `at`, with the emulator's clock at the same instant."""
    emu.set_clock(at)
    run = fresh_dag(dag_id).test(logical_date=at, run_conf=conf)
    assert run.state == expect, f"{dag_id} at {at}: {run.state}"
    return run


def event_calls(emu) -> int:
    """API calls to the team log (retries included) so far."""
    return sum(v for k, v in emu.stats()["calls"].items() if "team_log" in k)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def settled_until(at: datetime) -> datetime:
    """What a run at `at` has settled (final, exact): time before `at - settle_hours`, up to the
    last settle batch boundary (an hour: SETTLE_BATCH_HOURS), with the default policy."""
    from dropbox_team_log.sync.planning import SyncPolicy

    policy = SyncPolicy()
    cutoff = int(at.timestamp()) - policy.settle_seconds
    return datetime.fromtimestamp(
        cutoff // policy.settle_batch_seconds * policy.settle_batch_seconds, UTC
    )
