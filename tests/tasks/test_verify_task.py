"""The optional verify task body: a whole dataset passes with a summary; bad files are moved
aside first, then the task fails for good, naming each file (the failure alert's reason)."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.tasks.verify_task import verify_dataset
from tests.dataset.test_store import DAY, HI, LO, make_batch
from tests.helpers.damage import truncate


def test_a_whole_dataset_passes_and_bad_files_fail_the_task_once_moved_aside(tmp_path: Path):
    ds = EventDataset(str(tmp_path / "events"))
    ds.write_day(DAY, [(LO, LO + 60)], [make_batch([LO + 1, LO + 2], "a")], fetched_at=HI)
    summary = verify_dataset(ds.root)
    assert (summary["files"], summary["rows"], summary["bad"]) == (1, 2, [])

    truncate(ds.hour_path(DAY, 0))
    with pytest.raises(AirflowFailException) as failed:
        verify_dataset(ds.root)
    message = str(failed.value)
    assert message.startswith(f"1 bad day file(s) under {ds.root}: {ds.hour_path(DAY, 0)}: footer")
    assert "(moved to " in message and "fetched again by the next sync" in message
    assert not Path(ds.hour_path(DAY, 0)).exists() and ds.has_quarantined(DAY)
    assert verify_dataset(ds.root)["files"] == 0
