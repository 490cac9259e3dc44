"""Late events (up to 24 h), byte-identical duplicates, unsorted and empty pages - all at once and
far above Dropbox's rates - over a backfill plus three simulated days of incremental runs.

tests/test_pipeline.py runs the same flow at realistic rates under a fault rotation; here the data
itself is as hostile as the emulator can make it, and the figures go into the summary.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.helpers.pipeline import event_calls, run_dag, settled_until
from tests.reliability.matrix import (
    EMULATOR,
    HORIZON,
    SETTLE,
    T0,
    FaultFigures,
    compare,
    conn_json,
    record,
)

HOSTILE = {
    **EMULATOR,
    "seed": 23,
    "events_per_day": 40,
    "late_rate": 0.6,  # Dropbox: a few percent
    "duplicate_rate": 0.15,
    "empty_page_rate": 0.3,
    "unknown_type_rate": 0.05,
}
#: The backfill's days: day files and hour files both, and hostile pages on every day (the
#: 60-day range itself is tests/test_pipeline.py's claim).
DAYS = 7


@pytest.fixture(scope="module")
def hostile(airflow_db):
    from dropbox_emulator import running_emulator

    with running_emulator(**HOSTILE) as emu:
        mp = pytest.MonkeyPatch()
        mp.setenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", conn_json(emu))
        yield emu
        mp.undo()


@pytest.mark.slow
def test_hostile_data_backfill_then_three_days_of_incremental_runs(hostile, output):
    emu = hostile
    lo = T0 - timedelta(days=DAYS)
    run_dag(emu, "dropbox_team_log_backfill", T0, {"days": DAYS})
    expected, lost, duplicated = compare(output, emu, lo, T0, as_of=T0)
    assert (lost, duplicated) == (0, 0)
    at = T0
    for step in range(1, 3 * 2 + 1):  # every 12 h for 3 days
        at = T0 + timedelta(hours=12 * step)
        run_dag(emu, "dropbox_team_log_incremental", at)
        # settled in whole batches (an hour): exact up to the last batch boundary before at - SETTLE
        settled = settled_until(at)
        expected, lost, duplicated = compare(output, emu, lo, settled, as_of=at + HORIZON)
        assert (lost, duplicated) == (0, 0), f"settled data wrong after the run at {at}"
        _, _, fresh_dup = compare(output, emu, settled, at, as_of=at + HORIZON)
        assert fresh_dup == 0, "fresh data over-counted"
    truth = emu.truth(lo, settled_until(at), as_of=at + HORIZON)
    dups = len(truth) - len(set(truth))
    # Events of the backfill's last day that only became visible after it ran.
    late = emu.truth_count(T0 - SETTLE, T0, as_of=T0 + HORIZON) - emu.truth_count(
        T0 - SETTLE, T0, as_of=T0
    )
    calls = event_calls(emu)
    record(
        FaultFigures(
            f"late + duplicates + unsorted + empty pages ({DAYS} d backfill + 3 d incremental)",
            dups + late,
            calls,
            calls,
            expected,
            lost,
            duplicated,
            note=f"{dups} byte-identical duplicates, {late} events late across the hand-off, "
            "every page unsorted, 30% empty pages; 1 backfill + 6 incremental runs",
        )
    )
    assert dups > 0 and late > 0, "the hostile data was not hostile"
