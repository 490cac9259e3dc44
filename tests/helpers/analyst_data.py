"""The emulator dataset the query and report tests share, built once per module.

Written through the sync layer (`sync_day`, the mapped task's body: real HTTP, real SDK, real
transform and Parquet writer) rather than full DAG runs, for speed. Besides the emulator's own
generated events it holds Dropbox's spec examples (the package's copy of ../shared/fixtures: one
event per type, odd actors included) and a few hostile names, so the views meet every shape the
API documents.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from tests.helpers.paths import SPEC_EVENTS
from tests.helpers.pipeline import connection_json, utc

#: The connection time: the dataset is the DAYS days before it.
T0 = utc(2026, 11, 20, 10, 30, 15)
DAYS = 30
#: Dropbox's spec examples, as the package ships them (a copy of ../shared/fixtures/).
SPEC_FIXTURE = SPEC_EVENTS
#: A file name that would run script in the report if it were not escaped.
HOSTILE_NAME = "</script><img src=x onerror=\"document.title='pwned'\">.pdf"


def spec_events(start: datetime, span: timedelta) -> list[dict]:
    """The spec examples, re-timed into [start, start + span) (one per 2 hours, in order)."""
    lines = [json.loads(line) for line in SPEC_FIXTURE.read_text().splitlines() if line.strip()]
    step = span / (len(lines) + 1)
    for i, event in enumerate(lines):
        event["timestamp"] = (start + step * (i + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return lines


def hostile_events(at: datetime) -> list[dict]:
    """Anonymous opens of a file with a hostile name (enough to top the report's list)."""
    event = {
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event_category": {".tag": "sharing"},
        "event_type": {".tag": "shared_link_view", "description": "(sharing) Opened shared link"},
        "details": {".tag": "shared_link_view_details"},
        "actor": {".tag": "anonymous"},
        "origin": {
            "access_method": {".tag": "end_user", "end_user": {".tag": "web"}},
            "geo_location": {"ip_address": "203.0.113.66", "country": "ZZ"},
        },
        "involve_non_team_member": True,
        "context": {".tag": "anonymous"},
        "assets": [
            {
                ".tag": "file",
                "path": {"contextual": f"/Shared/{HOSTILE_NAME}"},
                "display_name": HOSTILE_NAME,
                "file_id": "id:hostile0000000000000000",
            }
        ],
    }
    return [event] * 12


@contextmanager
def emulator_dataset(root: Path, days: int = DAYS) -> Generator[Path, None, None]:
    """Sync the `days` days before T0 from a fresh emulator into `root`; yields `root`."""
    from dropbox_emulator import running_emulator

    start = T0 - timedelta(days=days)
    with running_emulator(
        seed=23,
        clock=T0,
        timeline_start=start - timedelta(days=1),
        timeline_end=T0 + timedelta(days=1),
        events_per_day=150,
        page_size=400,
        duplicate_rate=0.02,
        late_rate=0.1,
        unknown_type_rate=0.01,
    ) as emu:
        early = T0 - timedelta(hours=1)  # visible before the sync reads them
        emu.add_events(spec_events(start, T0 - start - timedelta(days=2)), visible_at=early)
        emu.add_events(hostile_events(T0 - timedelta(days=3)), visible_at=early)
        sync_days(emu, root, start)
    yield root


def sync_days(emu: Any, root: Path, start: datetime) -> None:
    """Every day from `start` to T0, from `emu` into the dataset at `root`, as the mapped sync
    task does (the connection the connect command saves, read from AIRFLOW_CONN_*)."""
    from dropbox_team_log.dataset.store import EventDataset
    from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
    from dropbox_team_log.sync.engine import sync_day
    from dropbox_team_log.sync.planning import SyncPolicy, split_days

    previous = os.environ.get("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT")
    os.environ["AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT"] = connection_json(emu, connected_at=T0)
    try:
        hook = DropboxTeamHook()
        dataset = EventDataset(str(root))
        as_of = int(T0.timestamp())
        policy = SyncPolicy(
            settle_seconds=25 * 3600, refresh_seconds=6 * 3600, catchup_seconds=7 * 86400
        )
        for span in split_days(int(start.timestamp()), as_of):
            sync_day(
                reader=hook.event_reader(),
                dataset=dataset,
                span=span,
                as_of=as_of,
                policy=policy,
                team_id=emu.config.resolved_team_id,
            )
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT"] = previous


def raw_rows(root: Path) -> list[tuple[str, dict]]:
    """(event_date, parsed raw_event) of every row, read with pyarrow (not DuckDB)."""
    table = ds.dataset(str(root), format="parquet", partitioning="hive").to_table(
        columns=["event_date", "raw_event"]
    )
    dates = [str(d) for d in table.column("event_date").to_pylist()]
    return list(
        zip(dates, (json.loads(r) for r in table.column("raw_event").to_pylist()), strict=True)
    )


def ts_text(value: datetime) -> str:
    """A timestamp from DuckDB in the API's wire form, for comparing with raw_event."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
