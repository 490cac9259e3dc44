"""Two runs writing the same partitions at once (a manual re-trigger during a scheduled run):
the real sync path (hook -> reader -> transform -> dataset) in two threads started together,
their fetches overlapping (slow responses), their writes to the same day files racing.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
from dropbox_team_log.sync.engine import sync_day
from dropbox_team_log.sync.planning import SyncPolicy, split_days
from tests.helpers.pipeline import event_calls, settled_until
from tests.reliability.matrix import T0, FaultFigures, compare, injected, record


def _run(root: str, as_of: int, lo: int, barrier: threading.Barrier, errors: list) -> None:
    try:
        hook = DropboxTeamHook()
        team_id = str(hook.get_team_info()["team_id"])
        barrier.wait(timeout=60)
        for span in split_days(lo, as_of):
            sync_day(
                reader=hook.event_reader(),
                dataset=EventDataset(root),
                span=span,
                as_of=as_of,
                policy=SyncPolicy(),
                team_id=team_id,
            )
    except Exception as exc:
        errors.append(exc)


def test_scheduled_and_manual_runs_write_the_same_partitions_at_once(emu, connected, output):
    scheduled = T0 + timedelta(hours=1)
    manual = scheduled + timedelta(minutes=5)
    lo = T0 - timedelta(days=3)
    emu.set_clock(manual)
    calls0, injected0 = event_calls(emu), injected(emu)
    emu.set_faults([{"kind": "slow", "route": "2/team_log/*", "every": 2, "seconds": 0.05}])
    barrier = threading.Barrier(2)
    errors: list = []
    threads = [
        threading.Thread(
            target=_run,
            args=(str(output), int(at.timestamp()), int(lo.timestamp()), barrier, errors),
        )
        for at in (scheduled, manual)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        emu.clear_faults()
    assert errors == []
    settled = settled_until(scheduled)
    expected, lost, duplicated = compare(output, emu, lo, settled, as_of=manual)
    _, _, fresh_duplicated = compare(output, emu, settled, manual, as_of=manual)
    record(
        FaultFigures(
            "two runs writing the same partitions at once",
            injected(emu) - injected0,
            event_calls(emu) - calls0,
            None,
            expected,
            lost,
            duplicated + fresh_duplicated,
            note="4 day partitions written by both runs; slow responses make fetches overlap",
        )
    )
    assert (lost, duplicated, fresh_duplicated) == (0, 0, 0)
    assert not list(output.glob("event_date=*/.*.tmp"))
