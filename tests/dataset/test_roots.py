"""Dataset roots taken literally: a `[`, `*` or `?` in the root never reaches another folder.

Each root has a sibling its characters would match as a glob (`data[1]` -> `data1`, `data*` ->
`dataX`, `data?` -> `dataZ`) holding other days, other rows and a killed writer's temp file. The
dataset's days, the DuckDB views, the OCSF export and the temp-file cleanup see the root's own
files only, locally and on S3 (moto).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from dropbox_team_log.analytics import ocsf_export, views
from dropbox_team_log.dataset import roots
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.timeutil import day_bounds
from tests.dataset.test_store import DAY, HI, LO, make_batch
from tests.dataset.test_store_s3 import bucket, s3_endpoint

__all__ = ["bucket", "s3_endpoint"]  # fixtures

OTHER_DAY = date(2026, 1, 2)
ROOTS_AND_SIBLINGS = [("data[1]", "data1"), ("data*", "dataX"), ("data?", "dataZ")]


def fill(ours: EventDataset, theirs: EventDataset) -> None:
    """One row on DAY in our root; two rows on DAY and one on OTHER_DAY in the sibling."""
    theirs.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1, LO + 2], "theirs")], fetched_at=HI)
    lo, hi = day_bounds(OTHER_DAY)
    theirs.write_day(OTHER_DAY, [(lo, lo + 10)], [make_batch([lo + 1], "theirs")], fetched_at=hi)
    ours.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 3], "ours")], fetched_at=HI)


def descriptions(root: str) -> list[str]:
    con = views.connect(root)
    try:
        rows = con.sql("SELECT event_type_description FROM events ORDER BY 1").fetchall()
    finally:
        con.close()
    return [row[0] for row in rows]


@pytest.mark.parametrize(("name", "sibling"), ROOTS_AND_SIBLINGS)
def test_readers_of_a_local_root_see_its_files_only(tmp_path, name, sibling):
    ours, theirs = EventDataset(str(tmp_path / name)), EventDataset(str(tmp_path / sibling))
    fill(ours, theirs)
    assert ours.days() == [DAY]
    assert descriptions(ours.root) == ["ours#0"]
    assert ocsf_export.export(ours.root, str(tmp_path / "ocsf")).records == 1
    assert descriptions(theirs.root) == ["theirs#0", "theirs#0", "theirs#1"]  # still there


@pytest.mark.parametrize(("name", "sibling"), ROOTS_AND_SIBLINGS)
def test_the_temp_file_cleanup_of_a_local_root_stays_in_it(tmp_path, name, sibling):
    ours, theirs = EventDataset(str(tmp_path / name)), EventDataset(str(tmp_path / sibling))
    fill(ours, theirs)
    killed_ours = Path(ours.day_dir(DAY)) / ".events-00.parquet.0123abcd.tmp"
    killed_theirs = Path(theirs.day_dir(DAY)) / ".events-00.parquet.4567cdef.tmp"
    killed_ours.write_bytes(b"a killed writer's half file")
    killed_theirs.write_bytes(b"a file of the other dataset")
    ours.write_day(DAY, [(LO + 100, LO + 110)], [make_batch([LO + 101], "more")], fetched_at=HI)
    assert not killed_ours.exists()  # our own leftover is removed, as before
    assert killed_theirs.read_bytes() == b"a file of the other dataset"


@pytest.mark.parametrize(("name", "sibling"), ROOTS_AND_SIBLINGS)
def test_readers_of_an_s3_root_see_its_objects_only(bucket, name, sibling):
    ours = EventDataset(f"s3://{bucket}/{name}")
    theirs = EventDataset(f"s3://{bucket}/{sibling}")
    fill(ours, theirs)
    assert ours.days() == [DAY]
    assert descriptions(f"s3://{bucket}/{name}") == ["ours#0"]


def test_glob_under_escapes_the_base_only():
    assert roots.glob_under("/x/a[1]*?/", "event_date=*/*.parquet") == (
        "/x/a[[]1][*][?]/event_date=*/*.parquet"
    )
    assert roots.literal("/plain/path") == "/plain/path"
