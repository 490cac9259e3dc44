"""EventDataset(team=): each team's files written, locked, read and healed on their own, in the
same day folders, while the readers' glob sees every team's rows exactly once."""

from __future__ import annotations

import os
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from dropbox_team_log.dataset.layout import TeamKeyError
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.settings import DAY_FILE_AFTER_HOURS
from tests.dataset.test_store import DAY, HI, LO, ids, make_batch
from tests.dataset.test_store_s3 import bucket, objects, s3_endpoint
from tests.helpers.damage import truncate
from tests.helpers.dataset import read_dataset

__all__ = ["bucket", "s3_endpoint"]  # fixtures shared with test_store_s3
H = 3600
ONE_DAY = timedelta(days=1)


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path / "events")


def test_each_team_sees_only_its_own_files(root):
    a, b = EventDataset(root), EventDataset(root, team="team_b")
    a.write_day(DAY, [(LO, LO + 2 * H)], [make_batch([LO + 5, LO + H + 5], "a")], fetched_at=HI)
    b.write_day(DAY, [(LO + H, LO + 3 * H)], [make_batch([LO + H + 9], "b")], fetched_at=HI)
    names = sorted(os.listdir(a.day_dir(DAY)))
    assert names == [
        "events-00.parquet",
        "events-01.parquet",
        "team_b.events-01.parquet",
        "team_b.events-02.parquet",
    ]
    assert [iv[:2] for iv in a.read_coverage(DAY).intervals] == [(LO, LO + 2 * H)]
    assert [iv[:2] for iv in b.read_coverage(DAY).intervals] == [(LO + H, LO + 3 * H)]
    assert ids(a.read_day(DAY)) == ["a#0", "a#1"] and ids(b.read_day(DAY)) == ["b#0"]
    assert a.days() == b.days() == a.all_days() == [DAY]
    assert EventDataset(root, team="team_c").days() == []
    assert a.teams() == [None, "team_b"]
    assert len(a.all_file_paths(DAY)) == 4 and len(b.file_paths(DAY)) == 2
    assert sorted(ids(read_dataset(root))) == ["a#0", "a#1", "b#0"]  # the glob: both, once
    assert repr(b).endswith("team='team_b')")


def check_day_file_beside_hour_files(root: str) -> list[str]:
    """The mixing rule is per team: the default team's day file beside another team's hour
    files (and the other way round on the next day) in one folder, each read whole, once.
    Returns the names of the first day's files."""
    settled = HI + DAY_FILE_AFTER_HOURS * H
    a, b = EventDataset(root), EventDataset(root, team="team_b")
    a.write_day(DAY, [(LO, HI)], [make_batch([LO + 5, LO + 13 * H], "a")], fetched_at=settled)
    b.write_day(DAY, [(LO, LO + 2 * H)], [make_batch([LO + 9, LO + H + 9], "b")], fetched_at=HI)
    assert a.is_day_file(DAY) and not b.is_day_file(DAY)
    # a later write of each keeps its kind: team_b's old day stays in hour files
    b.write_day(DAY, [(LO, HI)], [make_batch([LO + 9, LO + 20 * H], "b2")], fetched_at=settled)
    a.write_day(DAY, [(LO + 13 * H, LO + 14 * H)], [make_batch([LO + 13 * H], "a2")], settled)
    assert a.is_day_file(DAY) and not b.is_day_file(DAY)
    assert ids(a.read_day(DAY)) == ["a#0", "a2#0"] and ids(b.read_day(DAY)) == ["b2#0", "b2#1"]
    assert [iv[:2] for iv in a.read_coverage(DAY).intervals] == [(LO, HI)]
    assert [iv[:2] for iv in b.read_coverage(DAY).intervals] == [(LO, HI)]
    # the next day: team_b first writes it settled (a day file), the default team recent
    lo2, hi2 = LO + 24 * H, HI + 24 * H
    next_settled = hi2 + DAY_FILE_AFTER_HOURS * H
    b.write_day(DAY + ONE_DAY, [(lo2, hi2)], [make_batch([lo2 + 1], "b3")], next_settled)
    a.write_day(DAY + ONE_DAY, [(lo2, lo2 + H)], [make_batch([lo2 + 2], "a3")], fetched_at=hi2)
    assert b.is_day_file(DAY + ONE_DAY) and not a.is_day_file(DAY + ONE_DAY)
    assert Counter(ids(read_dataset(root))) == Counter(
        ["a#0", "a2#0", "b2#0", "b2#1", "b3#0", "a3#0"]
    )
    assert sum(c.rows for c in a.verify()) == 6 and all(c.problem is None for c in a.verify())
    return sorted(path.rpartition("/")[2] for path in a.all_file_paths(DAY))


def test_one_teams_day_file_beside_another_teams_hour_files(root):
    assert check_day_file_beside_hour_files(root) == [
        "events.parquet",
        *(f"team_b.events-{hour:02d}.parquet" for hour in range(24)),
    ]


def test_one_teams_day_file_beside_another_teams_hour_files_on_s3(bucket):
    names = check_day_file_beside_hour_files(f"s3://{bucket}/events")
    assert names == ["events.parquet", *(f"team_b.events-{h:02d}.parquet" for h in range(24))]


def test_a_bad_team_key_is_refused_before_anything_is_touched(root):
    with pytest.raises(TeamKeyError, match="connection id"):
        EventDataset(root, team="../escape")
    assert not os.path.exists(root)


def test_a_damaged_file_of_one_team_is_moved_aside_alone(root):
    a, b = EventDataset(root), EventDataset(root, team="team_b")
    for ds, tag in ((a, "a"), (b, "b")):
        ds.write_day(DAY, [(LO, LO + H)], [make_batch([LO + 1, LO + 2], tag)], fetched_at=HI)
    truncate(b.hour_path(DAY, 0))
    assert a.read_coverage(DAY).intervals  # the default team's read never touches b's file
    assert not a.quarantined and not a.has_quarantined(DAY)
    assert b.read_coverage(DAY).intervals == ()  # b's damaged file: moved aside, due again
    assert [Path(q.path).name for q in b.quarantined] == ["team_b.events-00.parquet"]
    assert b.has_quarantined(DAY) and not a.has_quarantined(DAY)
    assert ids(a.read_day(DAY)) == ["a#0", "a#1"]
    b.write_day(DAY, [(LO, LO + H)], [make_batch([LO + 3], "b2")], fetched_at=HI)
    assert sorted(ids(read_dataset(root))) == ["a#0", "a#1", "b2#0"]


def test_two_teams_writing_the_same_hours_at_once_never_touch_each_other(root):
    """Threads of both teams rewrite the same day's hours over and over; each team's last write
    is what it holds, the other team's rows are never replaced, merged or lost."""
    teams = [None, "team_b", "team.c-3"]
    rounds = 4
    errors: list[BaseException] = []

    def writer(team):
        ds = EventDataset(root, team=team)
        try:
            for n in range(rounds):
                rows = [LO + 60 * k + n for k in range(0, 24 * 60, 7)]  # every hour
                ds.write_day(DAY, [(LO, HI)], [make_batch(rows, f"{team}:{n}")], fetched_at=HI + n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in teams for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    seen = Counter(tag.split("#")[0] for tag in ids(read_dataset(root)))
    per_write = len(range(0, 24 * 60, 7))
    assert seen == {f"{t}:{rounds - 1}": per_write for t in teams}  # each team's last, once
    locks = sorted(os.listdir(os.path.join(root, "_locks")))
    assert locks == sorted(f"event_date={DAY}{'' if t is None else '.' + t}.lock" for t in teams)


def test_two_teams_writing_one_day_on_s3_at_once_keep_their_own_objects(bucket):
    """On S3 (moto, conditional PUTs) the same: each team's objects, each team's rows once."""
    root = f"s3://{bucket}/events"
    errors: list[BaseException] = []

    def writer(team, n):
        try:
            ds = EventDataset(root, team=team)
            rows = [LO + 17, LO + H + 17, LO + 2 * H + 17]
            ds.write_day(DAY, [(LO, LO + 3 * H)], [make_batch(rows, f"{team}")], fetched_at=HI + n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t, n)) for n in range(2) for t in (None, "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(objects(bucket)) == sorted(
        f"events/event_date={DAY}/{prefix}events-0{h}.parquet"
        for prefix in ("", "b.")
        for h in range(3)
    )
    assert Counter(t.split("#")[0] for t in ids(read_dataset(root))) == {"None": 3, "b": 3}
    for team in (None, "b"):
        assert len(EventDataset(root, team=team).read_day(DAY)) == 3
