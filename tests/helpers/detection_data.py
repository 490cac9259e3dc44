"""What the detection tests share: an emulator team with crafted activity, synced for real.

Days are written through the sync layer (`sync_day`, the mapped task's body: real HTTP, real SDK,
real transform and Parquet writer), only where the planner would find work due, so a second
`sync` at a later time re-reads exactly what the incremental DAG would.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from datetime import datetime, timedelta
from pathlib import Path

from tests.helpers.pipeline import connection_json, utc

#: The connection time of the detection tests' team.
T0 = utc(2026, 11, 20, 10, 30, 15)
CONN_ENV = "AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT"


def epoch(value: datetime) -> int:
    return int(value.timestamp())


@contextlib.contextmanager
def team_emulator(days: int = 12, **config) -> Generator:
    """An emulator (clock at T0, `days` of light background activity before it) whose
    connection is saved as AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT for the block."""
    from dropbox_emulator import running_emulator

    settings = {
        "seed": 31,
        "clock": T0,
        "timeline_start": T0 - timedelta(days=days + 1),
        "timeline_end": T0 + timedelta(days=3),
        "events_per_day": 40,
        "page_size": 200,
        "late_rate": 0.0,
        **config,
    }
    with running_emulator(**settings) as emu:
        previous = os.environ.get(CONN_ENV)
        os.environ[CONN_ENV] = connection_json(emu, connected_at=T0)
        try:
            yield emu
        finally:
            if previous is None:
                os.environ.pop(CONN_ENV, None)
            else:
                os.environ[CONN_ENV] = previous


def sync(emu, root: Path, start: datetime, as_of: datetime, *, refresh_hours: int = 1) -> list:
    """Sync [start, as_of) at `as_of` (the emulator's clock set to it), day by day, where work is
    due as the incremental DAG's planner sees it; returns the days written."""
    from dropbox_team_log.dataset.store import EventDataset
    from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
    from dropbox_team_log.sync.engine import due_ranges, sync_day
    from dropbox_team_log.sync.planning import SyncPolicy, split_days

    emu.set_clock(as_of)
    hook = DropboxTeamHook()
    dataset = EventDataset(str(root))
    now = epoch(as_of)
    policy = SyncPolicy(
        settle_seconds=25 * 3600, refresh_seconds=refresh_hours * 3600, catchup_seconds=7 * 86400
    )
    written = []
    for span in split_days(epoch(start), now):
        if due_ranges(dataset, span, as_of=now, policy=policy):
            sync_day(
                reader=hook.event_reader(),
                dataset=dataset,
                span=span,
                as_of=now,
                policy=policy,
                team_id=emu.config.resolved_team_id,
            )
            written.append(span.day)
    return written
