"""The OCSF export: Parquet files in the hive and Security Lake layouts that hold every event once,
read back with DuckDB and pyarrow and validated against the OCSF schema; re-runnable, whole files
only, on a local folder and on S3 (moto), and through the CLI.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import boto3
import duckdb
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from dropbox_team_log import settings
from dropbox_team_log.analytics import ocsf, ocsf_export
from dropbox_team_log.analytics.ocsf_export import SecurityLakeTarget
from dropbox_team_log.cli import main as cli
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.transform.events import events_to_batch
from tests.analytics.test_ocsf import invalid_records
from tests.dataset.test_store_s3 import bucket, s3_endpoint
from tests.helpers.analyst_data import emulator_dataset, raw_rows

__all__ = ["bucket", "s3_endpoint"]  # fixtures

LAKE = SecurityLakeTarget(region="eu-west-1", account_id="123456789012")
LAKE_FILE = re.compile(
    r"ext/(?P<source>[a-z-]+)/region=eu-west-1/accountId=123456789012/"
    r"eventDay=(?P<day>\d{8})/records\.parquet"
)
HIVE_FILE = re.compile(r"class_uid=(?P<cls>\d+)/event_day=(?P<day>[\d-]{10})/records\.parquet")


#: Days of the dataset: more than one export chunk (settings.OCSF_CHUNK_DAYS) of them.
DAYS = settings.OCSF_CHUNK_DAYS + 2


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    with emulator_dataset(tmp_path_factory.mktemp("ocsf-export") / "dataset", DAYS) as path:
        yield path


@pytest.fixture(scope="module")
def exported(root, tmp_path_factory) -> tuple[Path, ocsf_export.ExportResult]:
    out = tmp_path_factory.mktemp("ocsf-out")
    return out, ocsf_export.export(str(root), str(out), security_lake=LAKE)


def files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def dataset_raw_events(root: Path) -> Counter:
    """The dataset's raw_event texts, read with pyarrow (not DuckDB)."""
    table = pads.dataset(str(root), format="parquet", partitioning="hive").to_table(
        columns=["raw_event"]
    )
    return Counter(table.column("raw_event").to_pylist())


def read_hive(out: Path) -> list[dict]:
    glob = str(out / "class_uid=*" / "event_day=*" / "*.parquet")
    query = "SELECT * FROM read_parquet($glob, hive_partitioning = true, union_by_name = true)"
    return duckdb.connect().sql(query, params={"glob": glob}).to_arrow_table().to_pylist()


def test_both_layouts_hold_every_event_once_as_a_valid_record(root, exported):
    out, result = exported
    events = raw_rows(root)
    names = files(out)
    hive = [n for n in names if HIVE_FILE.fullmatch(n)]
    lake = [n for n in names if LAKE_FILE.fullmatch(n)]
    assert sorted(hive + lake) == names  # nothing else: no temp file, no stray name
    assert len(hive) == len(lake) == len(result.written) / 2
    assert result.records == len(events)
    rows = read_hive(out)
    assert Counter(r["raw_data"] for r in rows) == dataset_raw_events(root)
    lake_rows = [row for path in lake for row in pq.read_table(out / path).to_pylist()]
    assert invalid_records(lake_rows) == Counter()
    assert Counter(r["raw_data"] for r in lake_rows) == Counter(r["raw_data"] for r in rows)


def test_a_file_holds_one_class_and_one_day_with_that_class_attributes_only(exported):
    out, _ = exported
    sources = {name: uid for uid, name in settings.OCSF_SECURITY_LAKE_SOURCES.items()}
    assert all(len(name) <= 20 for name in sources)  # Security Lake's limit on source names
    for name in files(out):
        table = pq.read_table(out / name)
        hive, lake = HIVE_FILE.fullmatch(name), LAKE_FILE.fullmatch(name)
        class_uid = int(hive["cls"]) if hive else sources[lake["source"]]
        day = hive["day"].replace("-", "") if hive else lake["day"]
        assert table.column_names == list(ocsf.CLASS_COLUMNS[class_uid]), name
        assert set(table.column("class_uid").to_pylist()) == {class_uid}
        days = {
            datetime.fromtimestamp(t / 1000, UTC).strftime("%Y%m%d")
            for t in table["time"].to_pylist()
        }
        assert days == {day}
        group = pq.read_metadata(out / name).row_group(0)
        codecs = {
            group.column(i).path_in_schema: group.column(i).compression
            for i in range(group.num_columns)
        }
        assert codecs["raw_data"] == codecs["unmapped.details"] == "ZSTD"  # the bulk of the bytes


def test_re_export_replaces_and_a_class_that_left_a_day_is_removed(tmp_path):
    root, out = tmp_path / "dataset", tmp_path / "out"
    day = date(2026, 5, 4)
    first = int(datetime(2026, 5, 4, tzinfo=UTC).timestamp())
    dataset = EventDataset(str(root))

    def write(*types: tuple[str, str], fetched_at: int) -> None:
        events = [
            {
                "timestamp": f"2026-05-04T10:00:0{i}Z",
                "event_category": {".tag": category},
                "event_type": {".tag": event_type, "description": event_type},
                "actor": {".tag": "user", "user": {"email": "a@example.com"}},
            }
            for i, (event_type, category) in enumerate(types)
        ]
        batch = events_to_batch(events, team_id="dbtid:t", ingested_at=datetime.now(UTC))
        dataset.write_day(day, [(first, first + 86400)], [batch], fetched_at)

    write(
        ("file_download", "file_operations"), ("login_success", "logins"), fetched_at=first + 90000
    )
    result = ocsf_export.export(str(root), str(out), security_lake=LAKE)
    assert result.by_class == {6006: 1, 3002: 1}
    before = files(out)
    assert len(before) == 4
    again = ocsf_export.export(str(root), str(out), security_lake=LAKE)
    assert files(out) == before and again.records == 2 and again.removed == []
    # The day is re-read: the sign-in is gone, a download came.
    write(
        ("file_download", "file_operations"),
        ("file_download", "file_operations"),
        fetched_at=first + 99000,
    )
    third = ocsf_export.export(str(root), str(out), security_lake=LAKE)
    assert third.by_class == {6006: 2}
    assert len(third.removed) == 2
    assert files(out) == [n for n in before if "3002" not in n and "dropbox-auth" not in n]
    assert len(read_hive(out)) == 2


def test_a_day_of_several_files_is_read_whole(root, tmp_path):
    """Every Parquet file of a day folder (its hour files, every team's), not one per day."""
    copy = tmp_path / "dataset"
    shutil.copytree(root, copy)
    day_dir = max(copy.glob("event_date=*"), key=lambda d: len(list(d.glob("*.parquet"))))
    hour_files = sorted(day_dir.glob("events-*.parquet"))
    assert len(hour_files) > 1, "the fixture's days should be written as hour files"
    # a second team's file of the same hour, beside the default team's (its own name)
    shutil.copy(hour_files[0], day_dir / f"second_team.{hour_files[0].name}")
    result = ocsf_export.export(str(copy), str(tmp_path / "out"))
    expected = dataset_raw_events(copy)
    assert result.records == sum(expected.values()) > len(raw_rows(root))
    rows = read_hive(tmp_path / "out")
    assert Counter(r["raw_data"] for r in rows) == expected


def test_a_failed_export_leaves_whole_files_only(tmp_path, root, capfd):
    out = tmp_path / "out"
    ocsf_export.export(str(root), str(out))
    before = {name: (out / name).read_bytes() for name in files(out)}
    last_day = max(HIVE_FILE.fullmatch(n)["day"] for n in before)
    blocked = f"class_uid=6006/event_day={last_day}/records.parquet"
    (out / blocked).unlink()
    (out / blocked).mkdir()  # a folder where the file goes: its rename fails
    with pytest.raises(OSError):
        ocsf_export.export(str(root), str(out))
    after = {name: (out / name).read_bytes() for name in files(out)}
    assert set(after) == set(before) - {blocked}  # no temp file left, none lost
    assert after == {name: before[name] for name in after}  # each whole (the same records)
    gc.collect()  # the discarded files' writers: their buffers go nowhere, not to closed files
    assert "closed file" not in capfd.readouterr().err


def row_groups(out: Path) -> dict[str, list[int]]:
    """Each hive file's row group sizes."""
    sizes = {}
    for name in files(out):
        if HIVE_FILE.fullmatch(name):
            metadata = pq.read_metadata(out / name)
            sizes[name] = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    return sizes


def test_a_file_whose_day_fits_the_row_group_bound_is_one_row_group(root, tmp_path, monkeypatch):
    # The bound just above the largest day, and batches smaller than a day: a file's rows go
    # out together once the rows move past its day, never split where a batch ends. Rows come
    # in day order from one DuckDB thread (several threads interleave days: more, smaller
    # row groups, the same records).
    days = Counter(day for day, _ in raw_rows(root))
    monkeypatch.setattr(ocsf_export, "_BATCH_ROWS", 100)
    monkeypatch.setattr(settings, "OCSF_ROW_GROUP_ROWS", max(days.values()) + 1)
    ocsf_export.export(str(root), str(tmp_path), threads=1)
    sizes = row_groups(tmp_path)
    assert {name: groups for name, groups in sizes.items() if len(groups) > 1} == {}


def test_no_row_group_holds_more_than_the_bound(root, tmp_path, monkeypatch):
    """OCSF_ROW_GROUP_ROWS bounds the rows of a row group (and those waiting in memory)."""
    monkeypatch.setattr(settings, "OCSF_ROW_GROUP_ROWS", 7)
    result = ocsf_export.export(str(root), str(tmp_path))
    sizes = row_groups(tmp_path)
    assert max(size for groups in sizes.values() for size in groups) == 7
    assert sum(sum(groups) for groups in sizes.values()) == result.records


def test_both_layouts_hold_the_same_bytes(exported):
    """Each file is encoded once and written to both layouts."""
    out, _ = exported
    sources = settings.OCSF_SECURITY_LAKE_SOURCES
    for name in files(out):
        if hive := HIVE_FILE.fullmatch(name):
            day = hive["day"].replace("-", "")
            lake = f"ext/{sources[int(hive['cls'])]}/region=eu-west-1/accountId=123456789012"
            lake += f"/eventDay={day}/records.parquet"
            assert (out / name).read_bytes() == (out / lake).read_bytes(), name


def test_the_export_does_not_fsync(root, tmp_path, monkeypatch):
    """Re-runnable output: an fsync per file would cost more than the small files' records."""

    def fsync(fd: int) -> None:
        raise AssertionError("the OCSF export fsynced a file")

    monkeypatch.setattr(os, "fsync", fsync)
    result = ocsf_export.export(str(root), str(tmp_path))
    assert result.records == len(raw_rows(root))
    assert len(row_groups(tmp_path)) == len(result.written)


def test_a_re_export_writes_the_same_bytes(root, tmp_path):
    ocsf_export.export(str(root), str(tmp_path))
    before = {name: (tmp_path / name).read_bytes() for name in files(tmp_path)}
    ocsf_export.export(str(root), str(tmp_path))
    assert {name: (tmp_path / name).read_bytes() for name in files(tmp_path)} == before


def test_export_to_s3(root, exported, s3_endpoint, bucket):
    local_out, _ = exported
    result = ocsf_export.export(str(root), f"s3://{bucket}/lake", hive=False, security_lake=LAKE)
    keys = sorted(
        obj["Key"]
        for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
    )
    assert keys == sorted(f"lake/{n}" for n in files(local_out) if LAKE_FILE.fullmatch(n))
    assert result.records == len(raw_rows(root))


def test_cli(root, tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        cli.main(
            ["ocsf-export", "--root", str(root), "--out", str(out), "--layout", "security-lake"]
        )
        == 2
    )
    assert "--region" in capsys.readouterr().err
    args = ["ocsf-export", "--root", str(root), "--out", str(out), "--layout", "both"]
    args += ["--region", "eu-west-1", "--account-id", "123456789012"]
    days = EventDataset(str(root)).days()
    args += ["--start", days[1].isoformat(), "--end", days[2].isoformat()]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "of 2 days" in printed and "6006 File Hosting Activity" in printed
    written = {HIVE_FILE.fullmatch(n)["day"] for n in files(out) if HIVE_FILE.fullmatch(n)}
    assert written == {days[1].isoformat(), days[2].isoformat()}


def test_a_source_created_with_a_version_has_it_in_its_location():
    target = SecurityLakeTarget("us-east-1", "123456789012", source_version="1.0")
    path = ocsf_export.security_lake_path("s3://lake", 3002, date(2026, 3, 1), target)
    assert path == (
        "s3://lake/ext/dropbox-auth/1.0/region=us-east-1/accountId=123456789012"
        "/eventDay=20260301/records.parquet"
    )
