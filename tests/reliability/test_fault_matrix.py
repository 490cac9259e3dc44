"""The fault matrix: each fault kind the emulator can inject, under a real backfill DAG run.

Every case ends exact against the emulator's ground truth (multisets: lost and duplicated events
counted separately), costs a bounded number of API calls compared with the fault-free run, and
records its figures for the closing note (printed at the end of the session).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers.pipeline import dataset_raws, event_calls, multiset, run_dag
from tests.reliability.matrix import (
    T0,
    FaultFigures,
    compare,
    conn_json,
    injected,
    over_count,
    record,
)

BACKFILL = "dropbox_team_log_backfill"
DAYS = 2  # 3 day partitions, ~38 pages: enough paging stages, a few seconds per run
#: Twice the suite's events a day, so that the few day tasks still page as much (the faults
#: count calls) while each run has fewer task instances (Airflow's cost is per task instance).
EMULATOR_OVERRIDES = {"events_per_day": 60}
LO, HI = T0 - timedelta(days=DAYS), T0
CONF = {"days": DAYS}
TEAM_LOG = "2/team_log/*"
REVOKED_DAYS = 6  # the revoked run's range: days beyond the reference's, left to give up


@pytest.fixture(scope="module")
def fault_free(emu, connected, tmp_path_factory):
    """The reference: the same backfill without faults (its API calls, its dataset)."""
    import os

    root = tmp_path_factory.mktemp("fault_free") / "dataset"
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(root))
    emu.clear_faults()
    before = event_calls(emu)
    run_dag(emu, BACKFILL, T0, CONF)
    calls = event_calls(emu) - before
    mp.undo()
    expected, lost, duplicated = compare(root, emu, LO, HI, as_of=T0)
    assert (lost, duplicated) == (0, 0)
    record(FaultFigures("fault-free reference", 0, calls, calls, expected, lost, duplicated))
    assert os.path.isdir(root)
    return {"calls": calls, "root": root}


# kind label -> (fault specs, connection extra, extra API calls allowed per injected fault)
CASES = {
    "429 storm (Retry-After 1 s)": (
        [{"kind": "rate_limit", "route": TEAM_LOG, "after": 2, "count": 4, "retry_after": 1}],
        {},
        1,
    ),
    "5xx burst (500/502/503)": (
        [
            {"kind": "server_error", "route": TEAM_LOG, "after": 1, "count": 3},
            {"kind": "server_error", "route": TEAM_LOG, "after": 6, "count": 2, "status": 503},
            {"kind": "server_error", "route": TEAM_LOG, "every": 5, "count": 2, "status": 502},
        ],
        {},
        1,
    ),
    "dropped connection (no response)": (
        [{"kind": "drop_connection", "route": TEAM_LOG, "every": 4, "count": 4}],
        {},
        1,
    ),
    "dropped connection mid-body": (
        [{"kind": "drop_mid_body", "route": TEAM_LOG, "every": 3, "count": 4}],
        {},
        1,
    ),
    "truncated 200 body": (
        [{"kind": "truncated_body", "route": TEAM_LOG, "every": 3, "count": 4, "fraction": 0.3}],
        {},
        1,
    ),
    "non-JSON 200 body": (
        [{"kind": "non_json", "route": TEAM_LOG, "every": 4, "count": 3}],
        {},
        1,
    ),
    "slower than the timeout": (
        [{"kind": "slow", "route": TEAM_LOG, "every": 5, "count": 2, "seconds": 1.5}],
        {"timeout": 0.5},
        1,
    ),
    "access token expiry mid-run": (
        [{"kind": "expire_access_token", "route": TEAM_LOG, "every": 6, "count": 3}],
        {},
        1,
    ),
    "cursor reset at 1st continue": ([{"kind": "cursor_reset", "count": 1}], {}, 12),
    "cursor reset at 2nd continue": ([{"kind": "cursor_reset", "after": 1, "count": 1}], {}, 12),
    "cursor reset at every 3rd continue": (
        [{"kind": "cursor_reset", "every": 3, "count": 4}],
        {},
        12,
    ),
    "bad_cursor at 1st continue": ([{"kind": "bad_cursor", "count": 1}], {}, 12),
    "bad_cursor at 3rd continue": ([{"kind": "bad_cursor", "after": 2, "count": 1}], {}, 12),
    "bad_cursor at every 4th continue": ([{"kind": "bad_cursor", "every": 4, "count": 3}], {}, 12),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fault_kind_ends_exact_with_bounded_calls(
    case, emu, fault_free, output, monkeypatch, request
):
    faults, extra, per_fault = CASES[case]
    if extra:
        monkeypatch.setenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", conn_json(emu, **extra))
    waits = _record_waits(monkeypatch)
    injected_before, calls_before = injected(emu), event_calls(emu)
    emu.set_faults(faults)
    try:
        run_dag(emu, BACKFILL, T0, CONF)
    finally:
        emu.clear_faults()
    n_faults = injected(emu) - injected_before
    calls = event_calls(emu) - calls_before
    expected, lost, duplicated = compare(output, emu, LO, HI, as_of=T0)
    record(FaultFigures(case, n_faults, calls, fault_free["calls"], expected, lost, duplicated))
    # Every fault of the case fired, as often as it says: the run paged far enough for each.
    assert n_faults == sum(fault["count"] for fault in faults), "a fault did not fire in full"
    assert (lost, duplicated) == (0, 0)
    # Bounded: each injected fault costs at most `per_fault` extra calls (no retry storm).
    assert calls <= fault_free["calls"] + per_fault * n_faults
    if faults[0]["kind"] == "rate_limit":
        honoured = [w for w in waits if w >= faults[0]["retry_after"]]
        assert len(honoured) >= n_faults, f"Retry-After not honoured: waits {waits}"


def _record_waits(monkeypatch) -> list[float]:
    """The waits the hook's retry loop asks for (it still really sleeps them)."""
    import time

    from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    defaults = dict(DropboxTeamHook.__init__.__kwdefaults__)
    monkeypatch.setattr(DropboxTeamHook.__init__, "__kwdefaults__", {**defaults, "sleep": sleep})
    return waits


def test_revoked_refresh_token_mid_run_fails_fast_and_writes_nothing_partial(
    emu, fault_free, output, monkeypatch, capfd
):
    """The admin revokes the app while a backfill runs: the run fails with the fix, retries
    nothing, and the dataset holds only whole, exact hour files (what was there stays as it
    was)."""
    shutil.copytree(fault_free["root"], output)
    before = {p: p.read_bytes() for p in output.rglob("*.parquet")}
    # Its own grant: revoking it must not break the other tests' connection.
    monkeypatch.setenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", conn_json(emu))
    calls_before, injected_before = event_calls(emu), injected(emu)
    emu.set_faults([{"kind": "revoke_refresh_token", "route": TEAM_LOG, "after": 7}])
    try:
        run_dag(emu, BACKFILL, T0, {"days": REVOKED_DAYS}, expect="failed")
    finally:
        emu.clear_faults()
    calls = event_calls(emu) - calls_before
    seen = capfd.readouterr()
    assert "reconnect the team with `dropbox-team-log connect" in seen.out + seen.err
    # Every day is either as it was or whole and exact: days written before the revocation, and
    # the day the first backfill only partly covered (the new range completes it), may change.
    assert all(path.exists() for path in before)
    lo = T0 - timedelta(days=REVOKED_DAYS)
    want = multiset(emu.truth(lo, T0, as_of=T0))
    assert over_count(output, want, lo, T0) == 0
    for day_file in output.glob("event_date=*/events*.parquet"):  # a day's file or an hour's
        if before.get(day_file) == day_file.read_bytes():
            continue  # as it was
        day_lo = datetime.fromisoformat(day_file.parent.name.split("=", 1)[1]).replace(tzinfo=UTC)
        if day_file.name == "events.parquet":  # a settled day: one file
            file_lo, file_hi = day_lo, day_lo + timedelta(days=1)
        else:
            file_lo = day_lo + timedelta(hours=int(day_file.stem.removeprefix("events-")))
            file_hi = file_lo + timedelta(hours=1)
        d_lo, d_hi = max(lo, file_lo), min(T0, file_hi)
        got = multiset(dataset_raws(str(output), d_lo, d_hi))
        assert got == multiset(emu.truth(d_lo, d_hi, as_of=T0)), f"{day_file} is partial"
    # Fail fast: after the revocation every remaining day task gives up on its first refusal.
    days_total = REVOKED_DAYS + 1
    assert calls <= 8 + days_total, f"{calls} team_log calls: retried a revoked token"
    expected, lost, duplicated = compare(output, emu, LO, HI, as_of=T0)
    record(
        FaultFigures(
            "refresh token revoked mid-run",
            injected(emu) - injected_before,
            calls,
            fault_free["calls"],
            expected,
            lost,
            duplicated,
            note="run fails (expected); message names `dropbox-team-log connect`",
        )
    )
    assert (lost, duplicated) == (0, 0)
