"""`dropbox-team-log verify` through the CLI's own entry point: the output names each bad file,
the exit code says whether any was bad, `--quarantine` moves them and says how to re-fetch."""

from __future__ import annotations

import json
import shlex
from datetime import timedelta
from pathlib import Path

import pytest

from dropbox_team_log.cli.main import main
from dropbox_team_log.dataset.store import EventDataset
from tests.dataset.test_store import DAY, HI, LO, make_batch
from tests.helpers.damage import flip_inside_page, truncate

DAYS = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]


@pytest.fixture
def ds(tmp_path: Path) -> EventDataset:
    """Three whole days."""
    ds = EventDataset(str(tmp_path / "events"))
    for n, day in enumerate(DAYS):
        lo = LO + n * 86_400
        rows = make_batch(list(range(lo, lo + 50)), f"d{n}")
        ds.write_day(day, [(lo, lo + 60)], [rows], fetched_at=HI + n * 86_400)
    return ds


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["verify", *argv])
    seen = capsys.readouterr()
    return code, seen.out, seen.err


def test_a_whole_dataset_passes(ds: EventDataset, capsys):
    code, out, _ = run(capsys, "--root", ds.root)
    assert code == 0
    assert out == "3 day files checked (150 rows): 0 bad\n"


def test_bad_files_are_named_with_the_reason_and_the_command_that_moves_them(
    ds: EventDataset, capsys
):
    flip_inside_page(ds.hour_path(DAYS[0], 0), "raw_event")
    truncate(ds.hour_path(DAYS[2], 0))
    code, out, _ = run(capsys, "--root", ds.root)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"DAMAGED {ds.hour_path(DAYS[0], 0)}: row group 1 of 1: ")
    assert "CRC checksum verification failed" in lines[0]
    assert lines[1].startswith(f"DAMAGED {ds.hour_path(DAYS[2], 0)}: footer unreadable: ")
    assert lines[2] == "3 day files checked (50 rows): 2 bad"
    assert f"dropbox-team-log verify --root {shlex.quote(ds.root)} --quarantine" in lines[3]
    assert Path(ds.hour_path(DAYS[0], 0)).exists()  # reported, not moved


def test_quarantine_moves_them_and_says_how_their_days_come_back(ds: EventDataset, capsys):
    flip_inside_page(ds.hour_path(DAYS[0], 0), "timestamp")
    truncate(ds.hour_path(DAYS[2], 0))
    code, out, _ = run(capsys, "--root", ds.root, "--quarantine")
    assert code == 1  # bad files were found, even though they are out of the way now
    moved = [line.removeprefix("  moved to ") for line in out.splitlines() if "moved to" in line]
    assert [Path(p).parent.name for p in moved] == [
        f"event_date={DAYS[0]}",
        f"event_date={DAYS[2]}",
    ]
    assert all(Path(p).is_file() for p in moved)
    assert f"Days with a file moved aside (its hours are missing now): {DAYS[0]}, {DAYS[2]}." in out
    command = out.splitlines()[-1].strip()
    assert command.startswith("airflow dags trigger dropbox_team_log_backfill --conf ")
    conf = json.loads(shlex.split(command)[-1])
    assert conf == {"start": str(DAYS[0]), "end": str(DAYS[2] + timedelta(days=1))}
    code, out, _ = run(capsys, "--root", ds.root)
    assert (code, out) == (0, "1 day files checked (50 rows): 0 bad\n")


def test_a_root_that_does_not_exist_is_an_error(tmp_path: Path, capsys):
    code, out, err = run(capsys, "--root", str(tmp_path / "nowhere"))
    assert code == 1 and out == ""
    assert err == f"error: the dataset root {tmp_path / 'nowhere'} does not exist\n"
