"""A tail poll's rows added to an hour file: added only while the file's tag allows it, each
outcome one atomic replace, rows read back as a reader would (pyarrow's discovery).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dropbox_team_log.dataset import file_format
from dropbox_team_log.dataset.merge import READ_BATCH_ROWS, ROW_GROUP_ROWS
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.dataset.tail_rows import add_tail_rows
from dropbox_team_log.dataset.tail_state import TailTag
from dropbox_team_log.settings import DAY_FILE_AFTER_HOURS
from tests.dataset.test_store import DAY, HI, LO, H, ds, ids, make_batch, seconds_of
from tests.helpers.dataset import read_dataset

__all__ = ["ds"]  # fixture

HOUR9 = LO + 9 * H
CHAIN = "c1"


def start_chain(ds: EventDataset, x: int) -> None:
    """A chain start: [LO + 9 h, x) replaced, its hour files tagged (c1, 0)."""
    ds.write_day(DAY, [(HOUR9, x)], [make_batch([HOUR9 + 5], "start")], x, tail=TailTag(CHAIN, 0))


def add(ds: EventDataset, seconds: list[int], name: str, *, seq: int, x: int, create=False):
    hour = seconds[0] // H * H if seconds else (x - 1) // H * H
    return add_tail_rows(
        ds,
        [make_batch(seconds, name)] if seconds else [],
        tag=TailTag(CHAIN, seq + 1),
        committed_seq=seq,
        covered=(max(hour, HOUR9), min(hour + H, x)),
        fetched_at=x,
        may_create=create,
    )


def tag_of(ds: EventDataset, hour: int) -> TailTag | None:
    return file_format.tail_of(pq.read_metadata(ds.hour_path(DAY, hour)), "f")


def test_a_poll_adds_its_rows_to_a_file_current_to_the_chain(ds):
    start_chain(ds, HOUR9 + 600)
    out = add(ds, [HOUR9 + 5, HOUR9 + 700], "poll1", seq=0, x=HOUR9 + 900)
    assert out.written and out.rows_added == 2 and not out.skipped
    assert sorted(ids(read_dataset(ds.root))) == ["poll1#0", "poll1#1", "start#0"]
    assert tag_of(ds, 9) == TailTag(CHAIN, 1)
    coverage = ds.read_coverage(DAY)
    assert coverage.uncovered(HOUR9, HOUR9 + 900) == []


def test_a_crashed_attempts_file_is_not_added_to_again_and_loses_its_tag(ds):
    start_chain(ds, HOUR9 + 600)
    add(ds, [HOUR9 + 700], "attempt1", seq=0, x=HOUR9 + 900)  # state not committed after it
    out = add(ds, [HOUR9 + 700, HOUR9 + 800], "attempt2", seq=0, x=HOUR9 + 1000)
    assert not out.written and out.detagged and "crashed" in out.reason
    assert sorted(ids(read_dataset(ds.root))) == ["attempt1#0", "start#0"]
    assert tag_of(ds, 9) is None
    again = add(ds, [HOUR9 + 1100], "later", seq=1, x=HOUR9 + 1200)  # never added to again
    assert again.skipped and "replaced" in again.reason


def test_a_replaced_or_foreign_or_lost_file_gets_nothing(ds):
    start_chain(ds, HOUR9 + 2 * H)
    ds.write_day(DAY, [(HOUR9, HOUR9 + H)], [make_batch([HOUR9 + 1], "settle")], HOUR9 + 30 * H)
    assert add(ds, [HOUR9 + 10], "late", seq=0, x=HOUR9 + 30 * H).reason.startswith("replaced")
    other = add_tail_rows(
        ds,
        [make_batch([HOUR9 + H + 10], "other")],
        tag=TailTag("c2", 1),
        committed_seq=0,
        covered=(HOUR9 + H, HOUR9 + 2 * H),
        fetched_at=HOUR9 + 2 * H,
        may_create=False,
    )
    assert other.reason == "another chain's file"
    lost = add(ds, [LO + 14 * H + 5], "lost", seq=0, x=LO + 15 * H)  # no file, not creatable
    assert lost.reason == "its file is gone"
    assert ids(read_dataset(ds.root)) == ["settle#0"]  # the settle replaced hour 9 whole


def test_a_new_hour_gets_a_tagged_file_even_without_rows(ds):
    start_chain(ds, HOUR9 + 600)
    out = add(ds, [], "none", seq=0, x=LO + 11 * H + 60, create=True)  # X moved into hour 11
    assert out.written and out.rows_added == 0
    assert tag_of(ds, 11) == TailTag(CHAIN, 1)
    idle = add(ds, [], "idle", seq=1, x=LO + 11 * H + 120)  # nothing new: left as it is
    assert not idle.written and not idle.skipped


def test_a_day_file_takes_a_polls_late_rows_once(ds):
    """A chain started in a settled day without hour files wrote its one day file, tagged;
    a poll's late rows of that day go into that file (the tag then speaks for the day), and a
    replay of the poll adds nothing."""
    settled = HI + DAY_FILE_AFTER_HOURS * H
    start = [make_batch([HOUR9 + 5], "start")]
    ds.write_day(DAY, [(HOUR9, HI)], start, settled, tail=TailTag(CHAIN, 0))
    day_file = ds.day_file_path(DAY)
    assert ds.file_paths(DAY) == [day_file]
    out = add(ds, [HOUR9 + 700], "late", seq=0, x=settled + 60)
    assert out.written and out.rows_added == 1
    assert file_format.tail_of(pq.read_metadata(day_file), day_file) == TailTag(CHAIN, 1)
    replay = add(ds, [HOUR9 + 700], "late", seq=0, x=settled + 120)  # a crashed poll again
    assert replay.detagged and replay.rows_added == 0
    assert ds.file_paths(DAY) == [day_file]
    assert sorted(ids(read_dataset(ds.root))) == ["late#0", "start#0"]
    assert file_format.tail_of(pq.read_metadata(day_file), day_file) is None


def test_rows_outside_the_covered_hour_are_refused(ds):
    start_chain(ds, HOUR9 + 600)
    with pytest.raises(ValueError):
        add_tail_rows(
            ds,
            [make_batch([HOUR9 + H + 5], "next hour")],
            tag=TailTag(CHAIN, 1),
            committed_seq=0,
            covered=(HOUR9, HOUR9 + H),
            fetched_at=HOUR9 + 2 * H,
            may_create=False,
        )
    with pytest.raises(ValueError, match="one hour"):
        add_tail_rows(
            ds,
            [],
            tag=TailTag(CHAIN, 1),
            committed_seq=0,
            covered=(HOUR9, HOUR9 + 2 * H),
            fetched_at=HOUR9 + 2 * H,
            may_create=False,
        )


def test_a_delta_interleaved_with_a_big_file_keeps_every_row_once_and_sorted(ds):
    """New rows among the stored seconds (merged by one sort and take per old batch) and a run
    of new rows longer than a read batch (merged piece by piece), in one write: every row once,
    the file sorted, no row group over its size."""
    stored = [HOUR9 + i * 3599 // 12_000 for i in range(12_000)]  # several read batches
    end = HOUR9 + H
    ds.write_day(DAY, [(HOUR9, end)], [make_batch(stored, "old")], end, tail=TailTag(CHAIN, 0))
    scattered = list(range(HOUR9, HOUR9 + 3000, 7))  # shares seconds with the stored rows
    burst = [HOUR9 + 3300] * (READ_BATCH_ROWS + 500)  # more than a batch in one second
    out = add(ds, sorted(scattered + burst), "new", seq=0, x=end)
    assert out.written and out.rows_added == len(scattered) + len(burst)
    table = pq.read_table(ds.hour_path(DAY, 9))
    new = len(scattered) + len(burst)
    expected = [f"old#{i}" for i in range(len(stored))] + [f"new#{i}" for i in range(new)]
    assert sorted(ids(table)) == sorted(expected)
    as_seconds = table.column("timestamp").cast(pa.timestamp("s", "UTC"))
    assert seconds_of(pa.table({"timestamp": as_seconds})) == sorted(stored + scattered + burst)
    meta = pq.read_metadata(ds.hour_path(DAY, 9))
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= ROW_GROUP_ROWS
