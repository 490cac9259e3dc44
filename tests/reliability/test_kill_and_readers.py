"""SIGKILL a real backfill at random points during fetch and during write, then retry it, while a
reader thread reads the dataset over and over: the retry converges to exact, and the reader never
sees a partial file or an event more often than the API holds it (tests/test_pipeline.py kills
between day writes; here the kill lands inside a fetch or inside a write).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers.pipeline import event_calls, multiset, run_dag
from tests.reliability.matrix import T0, FaultFigures, compare, injected, over_count, record

DAYS = 8
LO = T0 - timedelta(days=DAYS)
BIG = 3 * 1024 * 1024  # bytes of details in the few huge events that make writes take a while


class Reader(threading.Thread):
    """Reads every visible row again and again; remembers the worst over-count and any error."""

    def __init__(self, root: Path, want: Counter) -> None:
        super().__init__(daemon=True)
        self.root, self.want = root, want
        self.stop = threading.Event()
        self.reads = 0
        self.worst = 0
        self.errors: list[str] = []
        self.seen: dict[str, str] = {}  # raw event -> canonical form, parsed once

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if any(self.root.glob("event_date=*/*.parquet")):  # else: nothing to read yet
                    self.worst = max(
                        self.worst, over_count(self.root, self.want, LO, T0, self.seen)
                    )
            except Exception as exc:  # a partial or vanishing file: exactly what must not happen
                self.errors.append(repr(exc)[:300])
            self.reads += 1
            time.sleep(0.01)


def _temp_file_visible(root: Path) -> bool:
    return root.is_dir() and any(root.glob("event_date=*/.*.tmp"))


def _days_written(root: Path) -> int:
    """Days written whole: a day file (a settled day) or all 24 hour files (a recent one)."""
    return sum(
        (day / "events.parquet").exists() or len(list(day.glob("events-*.parquet"))) == 24
        for day in root.glob("event_date=*")
    )


def _kill_when(proc: subprocess.Popen, ready, poll: float, deadline: float = 180) -> None:
    """SIGKILL the backfill's process group once `ready()`, checked every `poll` seconds."""
    end = time.monotonic() + deadline
    while not ready():
        assert proc.poll() is None, "the backfill finished before the kill point"
        assert time.monotonic() < end, "kill point never reached"
        time.sleep(poll)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def huge_days(emu):
    """One event with MBs of details on a few days, so a write is long enough to be hit."""
    template = json.loads(emu.truth(LO, T0, as_of=T0)[0])
    events = []
    for days_back in (2, 4, 6):
        event = dict(template)
        event["timestamp"] = (T0 - timedelta(days=days_back, hours=3)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        event["details"] = {".tag": "shared_content_download_details", "blob": "x" * BIG}
        events.append({"event": event, "visible_at": event["timestamp"]})
    emu.add_events(events)
    return len(events)


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "seed"), [("fetch", 1), ("fetch", 2), ("write", 3)])
def test_killed_anywhere_then_retried_converges_and_readers_never_see_doubles(
    stage, seed, emu, connected, huge_days, output
):
    rng = random.Random(seed)
    emu.set_clock(T0)
    want = multiset(emu.truth(LO, T0, as_of=T0))
    reader = Reader(output, want)
    reader.start()
    calls0, injected0 = event_calls(emu), injected(emu)
    if stage == "fetch":
        # Every call answers slowly, so the kill lands while a response is awaited.
        emu.set_faults([{"kind": "slow", "route": "2/team_log/*", "every": 1, "seconds": 0.15}])
        kill_after_calls = rng.randint(4, 18)
        # ready() asks the emulator (an HTTP call): a 20 ms poll still kills well inside the
        # 150 ms a response is held back, without spinning on stats calls.
        poll = 0.02

        def ready() -> bool:
            return event_calls(emu) - calls0 >= kill_after_calls

        point = f"after {kill_after_calls} team_log calls (mid-response)"
    else:
        kill_after_files = rng.randint(2, 6)
        poll = 0.002  # a temp file is visible only while its day is written

        def ready() -> bool:
            return _temp_file_visible(output) or (
                output.is_dir() and _days_written(output) >= kill_after_files
            )

        point = f"at the first temp file seen, else after {kill_after_files} day folders"
    airflow = Path(sys.executable).parent / "airflow"
    command = [str(airflow), "dags", "test", "dropbox_team_log_backfill", T0.isoformat()]
    proc = subprocess.Popen(
        [*command, "--conf", json.dumps({"days": DAYS})],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
        start_new_session=True,
    )
    try:
        _kill_when(proc, ready, poll)
        caught_write = _temp_file_visible(output)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        emu.clear_faults()
    days_done = _days_written(output) if output.is_dir() else 0
    assert days_done < DAYS + 1, "killed too late to matter"
    run_dag(emu, "dropbox_team_log_backfill", T0, {"days": DAYS})  # the retry
    reader.stop.set()
    reader.join(timeout=60)
    expected, lost, duplicated = compare(output, emu, LO, T0, as_of=T0)
    record(
        FaultFigures(
            f"SIGKILL during {stage} (seed {seed}), then retry",
            1,
            event_calls(emu) - calls0,
            None,
            expected,
            lost,
            duplicated,
            note=f"killed {point}; temp file left: {caught_write}; {days_done} days were "
            f"whole; reader: {reader.reads} reads, max over-count {reader.worst}, "
            f"{len(reader.errors)} errors; slow faults {injected(emu) - injected0}",
        )
    )
    assert reader.errors == [], reader.errors[:3]
    assert reader.reads > 0 and reader.worst == 0
    assert (lost, duplicated) == (0, 0)
    assert not list(output.glob("event_date=*/.*.tmp")), "the retry left temp files"
