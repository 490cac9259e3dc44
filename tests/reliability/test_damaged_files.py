"""A damaged day file never stops the pipeline and never hides: real DAG runs against the
emulator, files damaged the way disks and copies do it (cut short; bytes changed inside a page
behind an intact footer).

The plan reads every day's footer, a sync reads its neighbours' timestamps and merges with its
own file: whichever finds the damage moves the file aside (named in a WARNING) and the day is
fetched again, exactly (the emulator's ground truth as a multiset, duplicates counted).
Readers (`query`, `report`) leave out a file they cannot read and say how to move it aside;
`verify` finds what DuckDB would read silently.
"""

from __future__ import annotations

import re
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from dropbox_team_log.cli.main import main
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.settings import QUARANTINE_DIR
from tests.helpers.damage import flip_inside_page, truncate
from tests.helpers.pipeline import (
    dataset_raws,
    event_calls,
    multiset,
    run_dag,
    settled_until,
    utc,
)
from tests.reliability.matrix import HORIZON, T0, FaultFigures, compare, record

BACKFILL, INCREMENTAL = "dropbox_team_log_backfill", "dropbox_team_log_incremental"
DAYS = 4
LO = T0 - timedelta(days=DAYS)


@pytest.fixture(scope="module")
def backfilled(emu, connected, tmp_path_factory) -> Path:
    """The dataset one real backfill of DAYS days at T0 writes: run once, copied by each test
    (`output`), so no test pays for the same run again."""
    root = tmp_path_factory.mktemp("backfilled") / "dataset"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(root))
        run_dag(emu, BACKFILL, T0, {"days": DAYS})
    return root


@pytest.fixture
def output(output: Path, backfilled: Path) -> Path:
    """Every test here starts from the backfill's dataset: its own copy, at its output root."""
    shutil.copytree(backfilled, output)
    return output


def bounds(day: date) -> tuple[datetime, datetime]:
    start = utc(day.year, day.month, day.day)
    return start, start + timedelta(days=1)


def day_is_exact(emu, root: Path, day: date, as_of: datetime):
    """The day's rows are the API's answer as of `as_of`, duplicates counted."""
    range_is_exact(emu, root, *bounds(day), as_of=as_of)


def range_is_exact(emu, root: Path, lo: datetime, hi: datetime, as_of: datetime):
    """The rows of [lo, hi) are the API's answer as of `as_of`, duplicates counted."""
    assert multiset(dataset_raws(str(root), lo, hi)) == multiset(emu.truth(lo, hi, as_of=as_of))


def bounds_s(day: date) -> tuple[int, int]:
    return tuple(int(t.timestamp()) for t in bounds(day))  # type: ignore[return-value]


def moved_aside(root: Path, day: date) -> list[Path]:
    return sorted((root / QUARANTINE_DIR / f"event_date={day}").glob("events*.parquet.*"))


def hour_of(day: date, hour: int) -> tuple[datetime, datetime]:
    start = bounds(day)[0] + timedelta(hours=hour)
    return start, start + timedelta(hours=1)


#: The hour whose file the tests damage (one with events on every day of the emulator).
HOUR = 12


def shown(capfd, caplog) -> str:
    """What the task logs showed since the last call (Airflow's handlers or pytest's)."""
    text = "".join(capfd.readouterr()) + caplog.text
    caplog.clear()
    return text


def warned(log: str, path: str) -> bool:
    return re.search(rf"QUARANTINED day file {re.escape(path)} \(", log) is not None


def test_backfill_carries_on_past_a_cut_day_and_a_damaged_neighbour_and_heals_both(
    emu, connected, output, capfd, caplog
):
    # `output` holds the backfill of DAYS days at T0 (the `backfilled` fixture)
    cut, neighbour = (T0 - timedelta(days=2)).date(), (T0 - timedelta(days=3)).date()
    ds = EventDataset(str(output))
    # the cut day is recent (hour files); the neighbour was settled when the backfill wrote it
    # (one day file: settings.DAY_FILE_AFTER_HOURS)
    assert not ds.is_day_file(cut) and ds.file_paths(neighbour) == [ds.day_file_path(neighbour)]
    left = truncate(ds.hour_path(cut, HOUR))
    # the timestamps the density hint of the cut hour's sync reads (yesterday: no file a week
    # off); only that hour of the cut day is due, and the neighbour's same hour predicts it
    flip_inside_page(ds.day_file_path(neighbour), "timestamp")
    shown(capfd, caplog)
    calls = event_calls(emu)

    run_dag(emu, BACKFILL, T0, {"days": DAYS})  # failed in its plan task before
    log = shown(capfd, caplog)
    assert warned(log, ds.hour_path(cut, HOUR)) and warned(log, ds.day_file_path(neighbour))
    (kept,) = moved_aside(output, cut)
    assert kept.read_bytes() == left
    assert len(moved_aside(output, neighbour)) == 1
    day_is_exact(emu, output, cut, as_of=T0)
    # the plan had run: the neighbour's day (all its one file held) is the next run's
    lo, hi = bounds_s(neighbour)
    assert ds.read_coverage(neighbour).uncovered(lo, hi) == [(lo, hi)]

    run_dag(emu, BACKFILL, T0, {"days": DAYS})
    assert ds.file_paths(neighbour) == [ds.day_file_path(neighbour)]  # back as one day file
    expected, lost, duplicated = compare(output, emu, LO, T0, as_of=T0)
    assert (lost, duplicated) == (0, 0)
    record(
        FaultFigures(
            "damaged day files: one cut short, a neighbour's page changed (backfill)",
            2,
            event_calls(emu) - calls,
            None,
            expected,
            lost,
            duplicated,
            note="both moved to _quarantine/ and fetched again; no run failed",
        )
    )


def test_incremental_heals_a_cut_day_and_a_page_damaged_day_that_its_write_finds(
    emu, connected, output, capfd, caplog
):
    # `output` holds the backfill of DAYS days at T0 (the `backfilled` fixture)
    first = T0 + timedelta(hours=1)
    run_dag(emu, INCREMENTAL, first)
    ds = EventDataset(str(output))
    # Yesterday: the window's first day, its hour 10 due at `at` (settled then, in one batch),
    # footer intact, so only the merge of that write meets the changed page. Today: an hour cut
    # short, found by the plan.
    damaged, cut = (T0 - timedelta(days=1)).date(), T0.date()
    flip_inside_page(ds.hour_path(damaged, 10), "raw_event")
    truncate(ds.hour_path(cut, 9))
    shown(capfd, caplog)

    at = first + timedelta(hours=1)
    run_dag(emu, INCREMENTAL, at)
    log = shown(capfd, caplog)
    assert warned(log, ds.hour_path(damaged, 10)) and warned(log, ds.hour_path(cut, 9))
    assert "CRC checksum verification failed" in log
    # Both hours were fetched again whole at `at`, the window's first day's before the window.
    range_is_exact(emu, output, *hour_of(damaged, 10), as_of=at)
    range_is_exact(emu, output, *hour_of(cut, 9), as_of=at)
    _, lost, duplicated = compare(output, emu, LO, settled_until(at), as_of=at + HORIZON)
    assert (lost, duplicated) == (0, 0)
    assert (
        compare(output, emu, settled_until(at), at, as_of=at + HORIZON)[2] == 0
    )  # fresh: no doubles
    assert [len(moved_aside(output, day)) for day in (damaged, cut)] == [1, 1]


def test_readers_leave_out_a_file_they_cannot_read_and_say_how_to_move_it(
    emu, connected, output, capsys, caplog
):
    # `output` holds the backfill of DAYS days at T0 (the `backfilled` fixture)
    ds = EventDataset(str(output))
    cut = (T0 - timedelta(days=1)).date()
    whole = [d for d in ds.days() if d != cut]
    path = ds.hour_path(cut, HOUR)
    want = len(dataset_raws(str(output), bounds(min(ds.days()))[0], T0))
    want -= len(dataset_raws(str(output), *hour_of(cut, HOUR)))
    truncate(path)
    capsys.readouterr()

    code = main(["query", "--root", str(output), "--format", "csv", "SELECT count(*) FROM events"])
    seen = capsys.readouterr()
    assert code == 0, seen.err
    assert seen.out.splitlines()[1] == str(want)
    warning = caplog.text
    assert path in warning
    assert f"dropbox-team-log verify --root {output} --quarantine" in warning

    start, end = min(whole), max(whole)
    report = output.parent / "report.html"
    argv = ["report", "--root", str(output), "--out", str(report), "--quiet"]
    code = main([*argv, "--start", str(start), "--end", str(end)])
    assert code == 0 and report.stat().st_size > 0


def test_a_page_changed_behind_an_intact_footer_is_found_by_verify_and_fetched_again(
    emu, connected, output, capsys
):
    # `output` holds the backfill of DAYS days at T0 (the `backfilled` fixture)
    settled = (T0 - timedelta(days=2)).date()
    ds = EventDataset(str(output))
    path = ds.hour_path(settled, HOUR)
    flip_inside_page(path, "raw_event")
    lo, hi = (int(t.timestamp()) for t in hour_of(settled, HOUR))
    assert ds.read_coverage(settled).uncovered(lo, hi) == []  # the footer still claims the hour
    capsys.readouterr()

    assert main(["verify", "--root", str(output)]) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED {path}: row group 1 of 1: " in out and "CRC checksum" in out
    assert main(["verify", "--root", str(output), "--quarantine"]) == 1
    assert f"  moved to {moved_aside(output, settled)[0]}" in capsys.readouterr().out

    run_dag(emu, BACKFILL, T0, {"days": DAYS})  # what the output says to run
    _, lost, duplicated = compare(output, emu, LO, T0, as_of=T0)
    assert (lost, duplicated) == (0, 0)
    assert main(["verify", "--root", str(output)]) == 0


def test_a_damaged_file_that_cannot_be_moved_fails_the_plan_at_once_naming_it(
    emu, connected, output, capfd, caplog, monkeypatch
):
    """A read-only dataset: the file cannot be moved aside, so reading it again cannot help."""
    from dropbox_team_log.dataset import integrity

    # `output` holds the backfill of DAYS days at T0 (the `backfilled` fixture)
    ds = EventDataset(str(output))
    cut = (T0 - timedelta(days=1)).date()
    truncate(ds.hour_path(cut, HOUR))

    def read_only(*_args: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(integrity, "move_aside", read_only)
    shown(capfd, caplog)
    calls = event_calls(emu)
    run_dag(emu, BACKFILL, T0, {"days": 2}, expect="failed")
    log = shown(capfd, caplog)
    # AirflowFailException: the task fails for good, not after its retries
    assert re.search(
        rf"plan_days failed in run \S+: AirflowFailException: day file "
        rf"{re.escape(ds.hour_path(cut, HOUR))} is damaged \(footer unreadable: ",
        log,
    ), log[-3000:]
    assert "dropbox-team-log verify --quarantine" in log
    assert event_calls(emu) == calls
