"""Output folders and files never open to other local users, whatever the process umask:
0750 / 0640 at most (a permissive umask does not widen them), narrower when the umask says so.
tests/dataset/test_store.py checks the modes under the session's umask; this, the interplay."""

from __future__ import annotations

import os
import stat
from datetime import UTC, date, datetime

import orjson
import pytest

from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.transform.events import events_to_batch
from tests.helpers.paths import SPEC_EVENTS

SPEC = SPEC_EVENTS


@pytest.mark.parametrize("umask", [0o000, 0o002, 0o022, 0o027, 0o077])
def test_modes_under_every_umask(tmp_path, umask):
    event = orjson.loads(SPEC.read_bytes().splitlines()[0])
    event["timestamp"] = "2026-11-01T10:00:00Z"
    batch = events_to_batch([event], team_id="dbtid:x", ingested_at=datetime.now(UTC))
    lo = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
    root = tmp_path / "a" / "b" / "dataset"  # parents created by the writer too
    old = os.umask(umask)
    try:
        EventDataset(str(root)).write_day(
            date(2026, 11, 1), [(lo, lo + 86_400)], [batch], fetched_at=lo + 2 * 86_400
        )
    finally:
        os.umask(old)
    paths = [p for p in root.rglob("*")] + [root, root.parent, root.parent.parent]
    assert any(p.name == "events-00.parquet" for p in paths)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        limit = 0o750 if path.is_dir() else 0o640
        assert mode == limit & ~umask, f"{path}: {oct(mode)}"
        assert not mode & 0o007, f"{path} is open to other users: {oct(mode)}"
