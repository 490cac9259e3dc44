"""The tail against the emulator: incremental runs (tail step, then the day syncs) keep the
dataset equal to the API's ground truth as a multiset (duplicates counted), whatever happens.

Real HTTP, the real SDK and reader, the real dataset (hour files), read back with pyarrow's
dataset discovery like a reader's glob. The emulator's clock is each run's time. Covered: polls
deliver late events into old hours; a crash between two hour writes of one poll doubles nothing
on the retry; a cursor reset in the middle of a poll starts a new chain; whole hours settle 25 h
on and then equal the truth; a re-run changes no file.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta

import pytest

from dropbox_team_log import settings
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.dataset.tail_state import TailStateStore
from dropbox_team_log.sync import engine, tail
from dropbox_team_log.sync.planning import SyncPolicy, incremental_range, split_days
from dropbox_team_log.timeutil import HOUR, day_of
from tests.dataset.test_store_s3 import bucket, objects, pyarrow_raws, s3_endpoint
from tests.helpers.pipeline import dataset_raws, grant_app, multiset, reader_at, utc

__all__ = ["bucket", "s3_endpoint"]  # fixtures

T = utc(2026, 11, 20, 12, 0, 0)
C = int(T.timestamp()) + 1000  # connected_at: not on an hour
FAR = T + timedelta(days=30)
KEY = "dbtid:test"
POLICY = SyncPolicy()


@pytest.fixture(scope="module")
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(
        seed=31,
        clock=T,
        events_per_day=1200,
        page_size=40,
        empty_page_rate=0.05,
        duplicate_rate=0.03,
        late_rate=0.2,
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def refresh_token(emu) -> str:
    return grant_app(emu).refresh_token


class Pipeline:
    """Incremental runs as the DAG makes them: the tail step, then each due day's sync."""

    def __init__(self, emu, refresh_token: str, root: str, policy: SyncPolicy = POLICY) -> None:
        self.emu, self.root, self.policy = emu, root, policy
        self.reader = reader_at(
            emu.base_url,
            page_limit=40,
            oauth2_refresh_token=refresh_token,
            app_key=emu.config.app_key,
            app_secret=emu.config.app_secret,
        )
        self.dataset = EventDataset(root)
        self.states = TailStateStore(root)

    def run(
        self, as_of: int, *, late_by: int = 0
    ) -> tuple[tail.TailReport, list[engine.DaySyncReport]]:
        """A run of time `as_of`, started `late_by` seconds after it (the API's clock)."""
        self.emu.set_clock(as_of + late_by)
        return self.tail(as_of, f"run-{as_of}"), self.sync_days(as_of)

    def tail(self, as_of: int, claimant: str) -> tail.TailReport:
        """The tail step alone, as the run `claimant` (the API's clock as it is)."""
        return tail.tail_step(
            reader=self.reader,
            dataset=self.dataset,
            states=self.states,
            key=KEY,
            team_id="dbtid:test",
            connected_at=C,
            as_of=as_of,
            policy=self.policy,
            claimant=claimant,
        )

    def sync_days(self, as_of: int) -> list[engine.DaySyncReport]:
        cover = tail.read_cover(self.states, KEY)
        lo, hi = incremental_range(connected_at=C, as_of=as_of, policy=self.policy)
        return [
            engine.sync_day(
                reader=self.reader,
                dataset=self.dataset,
                span=span,
                as_of=as_of,
                policy=self.policy,
                team_id="dbtid:test",
                concurrency=1,
                cover=cover,
            )
            for span in split_days(lo, hi)
        ]

    def stored(self, lo: int = C, hi: int | None = None) -> Counter:
        return multiset(dataset_raws(self.root, utc_of(lo), FAR if hi is None else utc_of(hi)))

    def truth(self, lo: int = C, hi: int | None = None) -> Counter:
        return multiset(self.emu.truth(lo, FAR if hi is None else hi))

    def files(self) -> dict[str, tuple[int, int]]:
        out = {}
        for folder, _dirs, names in os.walk(self.root):
            for name in names:
                if name.endswith(".parquet"):
                    st = os.stat(os.path.join(folder, name))
                    out[os.path.join(folder, name)] = (st.st_mtime_ns, st.st_size)
        return out


def utc_of(epoch: int):
    return utc(1970, 1, 1) + timedelta(seconds=epoch)


def assert_within(stored: Counter, truth: Counter) -> None:
    """Nothing stored that the API does not hold, no event more often than the API has it."""
    extra = stored - truth
    assert not extra, f"{sum(extra.values())} rows beyond the truth (doubled or foreign)"


@pytest.fixture(autouse=True)
def late_rows_at_once(monkeypatch):
    """Late rows straight into their hour files at every poll (the deferral has its own test)."""
    monkeypatch.setattr(settings, "TAIL_LATE_FLUSH_SECONDS", 0)


@pytest.fixture
def pipe(emu, refresh_token, tmp_path) -> Pipeline:
    emu.clear_faults()
    emu.set_clock(T)
    return Pipeline(emu, refresh_token, str(tmp_path / "dataset"))


def test_polls_keep_every_hour_exact_and_bring_late_events(pipe):
    start, _ = pipe.run(C + 240)
    assert start.mode == "start" and start.seq == 0
    late_seen = 0
    at = C + 240
    for step in (240, 240, 3600, 240, 2 * 3600, 240):
        before = pipe.truth()
        at += step
        report, days = pipe.run(at)
        assert report.mode == "poll" and report.seq >= 1
        new = pipe.truth() - before
        late_seen += sum(n for raw, n in new.items() if _older(raw, at))
        assert pipe.stored() == pipe.truth()  # every event visible now, each exactly once
        # the day syncs fetch nothing the chain holds: only time before the connection
        fetched = [r for d in days for r in d.ranges]
        assert all(end <= utc_of(C).strftime("%Y-%m-%dT%H:%M:%SZ") for _s, end in fetched)
        assert report.hours_skipped == []
    assert late_seen > 0, "no event of an earlier hour arrived through a poll"


def _older(raw: str, at: int) -> bool:
    import orjson

    from dropbox_team_log.timeutil import from_wire

    return from_wire(orjson.loads(raw)["timestamp"]) < (at // HOUR - 1) * HOUR


def test_settle_after_25_hours_equals_the_truth_and_a_rerun_changes_nothing(pipe):
    at = C + 240
    pipe.run(at)
    for _ in range(28):
        at += HOUR
        pipe.run(at)
        assert pipe.stored() == pipe.truth()
    tags = {}
    for day in {day_of(C), day_of(at)}:
        tags |= pipe.dataset.read_tags(day)
    settled = [b for b, tag in tags.items() if b[1] + POLICY.settle_seconds <= at]
    assert settled and all(tags[b] is None for b in settled)  # settle replaced and untagged
    assert any(tag is not None for tag in tags.values())  # recent hours still the chain's
    assert pipe.stored(C - POLICY.settle_seconds) == pipe.truth(C - POLICY.settle_seconds)
    files = pipe.files()
    report, days = pipe.run(at)  # the same run again
    assert report.events == 0 and all(not d.ranges for d in days)
    assert pipe.files() == files


def crash_a_poll(pipe: Pipeline, at: int, monkeypatch) -> list:
    """Run at `at`, killed in the tail step right after its first hour write; the writes."""
    real, calls = tail.add_tail_rows, []

    def crash_after_first(*args, **kwargs):
        if len(calls) == 1:
            raise OSError("killed between two hour writes")
        out = real(*args, **kwargs)
        if out.written:
            calls.append(out)
        return out

    monkeypatch.setattr(tail, "add_tail_rows", crash_after_first)
    with pytest.raises(OSError, match="killed"):
        pipe.run(at)
    monkeypatch.setattr(tail, "add_tail_rows", real)
    return calls


def test_a_crash_between_two_hour_writes_doubles_nothing(pipe, monkeypatch):
    at = C + 240
    pipe.run(at)
    at += 3 * HOUR  # the poll now holds rows of several hours
    calls = crash_a_poll(pipe, at, monkeypatch)
    assert calls, "the crash came after one hour was written"
    assert_within(pipe.stored(), pipe.truth())
    report, _ = pipe.run(at)  # the retry: same cursor, same events
    assert report.mode == "poll" and len(report.hours_skipped) >= 1
    assert pipe.stored() == pipe.truth()
    for _ in range(3):
        at += HOUR
        pipe.run(at)
        assert_within(pipe.stored(), pipe.truth())  # the detagged hour waits for its settle
    while at < C + 3 * HOUR + POLICY.settle_seconds + 2 * HOUR:
        at += 4 * HOUR
        pipe.run(at)
    assert pipe.stored() == pipe.truth()


def test_a_cursor_reset_in_the_middle_of_a_poll_starts_a_new_chain(pipe):
    at = C + 240
    first, _ = pipe.run(at)
    at += 2 * HOUR
    pipe.run(at)
    pipe.emu.set_faults([{"kind": "cursor_reset", "after": 1, "count": 1}])  # page 2 of the poll
    at += 3 * HOUR
    report, _ = pipe.run(at)
    pipe.emu.clear_faults()
    assert report.mode == "restart" and report.chain != first.chain
    assert pipe.emu.stats()["faults_injected"].get("cursor_reset") == 1
    assert_within(pipe.stored(), pipe.truth())
    restart = (at - 3 * HOUR) // HOUR * HOUR  # the hour the old chain had reached
    assert pipe.stored(restart) == pipe.truth(restart)  # the new chain's time: exact now
    at += 240
    report, _ = pipe.run(at)
    assert report.mode == "poll" and report.chain != first.chain
    assert pipe.stored(restart) == pipe.truth(restart)
    while at < C + POLICY.settle_seconds + 8 * HOUR:
        at += 4 * HOUR
        pipe.run(at)
    assert pipe.stored() == pipe.truth()


def test_on_s3_a_crashed_poll_is_retried_exactly(
    emu, refresh_token, bucket, s3_endpoint, monkeypatch
):
    """The same on S3 (moto): conditional PUTs of hour files and of the chain state."""
    emu.clear_faults()
    pipe = Pipeline(emu, refresh_token, f"s3://{bucket}/team-log")

    def stored() -> Counter:
        raws = pyarrow_raws(s3_endpoint, f"{bucket}/team-log")
        return multiset(r for r in raws if _at_or_after(r, C))

    at = C + 240
    pipe.run(at)
    at += 3 * HOUR
    assert crash_a_poll(pipe, at, monkeypatch)
    assert_within(stored(), pipe.truth())
    report, _ = pipe.run(at)
    assert report.mode == "poll"
    assert stored() == pipe.truth()
    keys = sorted(objects(bucket))
    assert "team-log/_tail/dbtid:test.json" in keys
    assert all(k.endswith(".parquet") or k.startswith("team-log/_tail/") for k in keys), keys


def _at_or_after(raw: str, lo: int) -> bool:
    import orjson

    from dropbox_team_log.timeutil import from_wire

    return from_wire(orjson.loads(raw)["timestamp"]) >= lo


def test_a_late_run_and_a_replay(pipe):
    at = C + 240
    pipe.run(at)
    at += HOUR
    report, _ = pipe.run(at, late_by=600)  # started 10 min late: X passes its own time
    assert pipe.states.read(KEY).state.as_of > at
    assert pipe.stored() == pipe.truth()  # every event visible at the API's clock
    report, _ = pipe.run(at + 240, late_by=360)  # its time is before X: still a poll
    assert report.mode == "poll" and pipe.stored() == pipe.truth()
    files = pipe.files()
    replay, _ = pipe.run(at - HOUR)  # an older run cleared and run again
    assert replay.mode == "ahead" and pipe.files() == files
    report, _ = pipe.run(at + 2 * HOUR)
    assert report.mode == "poll" and pipe.stored() == pipe.truth()


def test_chain_due_holds_the_chains_hours_until_they_settle_or_refresh():
    from dropbox_team_log.dataset.ledger import Coverage
    from dropbox_team_log.dataset.tail_state import TailTag

    h = 1_000 * HOUR  # an hour boundary
    s = h + 600  # the chain starts inside hour h
    cover = tail.TailCover("c", 5, s, h + 3 * HOUR + 100)
    tags = {
        (h, h + HOUR): TailTag("c", 5),
        (h + HOUR, h + 2 * HOUR): TailTag("c", 6),  # ahead of the committed state
        (h + 2 * HOUR, h + 3 * HOUR): TailTag("old", 1),  # another chain's
        (h + 3 * HOUR, h + 4 * HOUR): TailTag("c", 2),
    }
    due = [(h, h + 3 * HOUR + 100)]  # what the coverage rules asked for
    got = tail.chain_due(
        due, tags, cover, span=(h, h + 86_400), as_of=h + 3 * HOUR + 100, settle=25 * HOUR
    )
    # before S: due; hour h+1 and h+2: not the chain's: due; hour h+3 to X: held
    assert got == [(h, s), (h + HOUR, h + 3 * HOUR)]
    settled = tail.chain_due(
        [], tags, cover, span=(h, h + 86_400), as_of=h + 26 * HOUR + 5, settle=25 * HOUR
    )
    assert settled == [(h, h + HOUR)]  # the held hour h settles whole, once old enough
    coverage = Coverage(((s, h + HOUR, h + HOUR), (h + 3 * HOUR, cover.as_of, cover.as_of)))
    refreshed = tail.chain_due(
        [(s, h + HOUR)],
        tags,
        cover,
        span=(h, h + 86_400),
        as_of=h + 4 * HOUR,
        settle=25 * HOUR,
        refresh=2 * HOUR,
        coverage=coverage,
    )
    assert refreshed == [(s, h + HOUR)]  # written 3 h ago: the refresh knob re-reads it


def test_with_the_refresh_knob_the_chain_stays_exact(emu, refresh_token, tmp_path):
    emu.clear_faults()
    policy = SyncPolicy(refresh_seconds=2 * HOUR)
    pipe = Pipeline(emu, refresh_token, str(tmp_path / "dataset"), policy)
    at = C + 240
    pipe.run(at)
    at += 3 * HOUR
    pipe.run(at)
    assert pipe.stored() == pipe.truth()
    at += 240
    pipe.run(at)
    assert pipe.stored() == pipe.truth()


def test_late_rows_wait_for_the_hourly_flush_and_then_are_exact(pipe, monkeypatch):
    monkeypatch.setattr(settings, "TAIL_LATE_FLUSH_SECONDS", HOUR)
    at = C + 2 * HOUR
    pipe.run(C + 240)
    pipe.run(at)  # an hour past the chain's start: flushes (nothing waits yet)
    waited = 0
    for step in (5, 15, 20):
        at += step * 60
        previous = pipe.states.read(KEY).state.as_of
        report, _ = pipe.run(at)
        waited = max(waited, report.late_pending)
        assert_within(pipe.stored(), pipe.truth())
        hot = tail.hot_from(previous, pipe.states.read(KEY).state.as_of)
        assert hot == (at // HOUR - (at % HOUR < settings.TAIL_PREVIOUS_HOUR_SECONDS)) * HOUR
        assert pipe.stored(hot) == pipe.truth(hot)  # the hot hours: fresh
    assert waited > 0, "no late row waited"
    pending = pipe.states.read(KEY).state.pending
    assert pending and os.path.exists(f"{pipe.root}/_tail/{pending}")
    # a crash after the pending file was written, before the state: an orphan, no double
    monkeypatch.setattr(pipe.states, "write", _fail_commit(pipe.states.write))
    with pytest.raises(OSError, match="commit"):
        pipe.run(at + 60)
    monkeypatch.undo()
    monkeypatch.setattr(settings, "TAIL_LATE_FLUSH_SECONDS", HOUR)
    busy = pipe.tail(at + 90, "another run")  # the dead run's claim has not lapsed
    assert busy.mode == "busy" and busy.api_calls == 0
    retry, _ = pipe.run(at + 60)  # the killed run's retry (its own claim)
    assert retry.mode == "poll" and retry.late_pending >= waited
    assert_within(pipe.stored(), pipe.truth())
    at += 20 * 60 + 60  # an hour since the flush: everything goes in
    report, _ = pipe.run(at)
    assert report.late_pending == 0 and pipe.states.read(KEY).state.pending is None
    assert not [n for n in os.listdir(f"{pipe.root}/_tail") if ".pending." in n]
    # the hours whose rows waited are exact; the hot hours the killed run had written lost
    # their tag (never doubled): they are exact at their settle
    assert pipe.stored(C, hot) == pipe.truth(C, hot)
    assert_within(pipe.stored(), pipe.truth())
    while at < C + 5 * HOUR + POLICY.settle_seconds:
        at += 4 * HOUR
        pipe.run(at)
    assert pipe.stored() == pipe.truth()


def _fail_commit(write):
    """The state's writes, except the commit of a poll (the claim still goes through)."""

    def flaky(key, state, *, expected):
        if state.claim is None:
            raise OSError("killed before the commit")
        return write(key, state, expected=expected)

    return flaky
