"""object_store on a local S3 server (moto): a large day file goes up a part at a time, its
completion is as conditional as a PUT, and a failed or lost upload leaves no parts behind.

moto's CompleteMultipartUpload is made to check `If-Match` as S3 does (test_store_s3.py's
fixture); every other call is moto's own.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import random
import tempfile
from collections.abc import Generator
from datetime import UTC, datetime
from typing import IO

import pyarrow as pa
import pytest

from dropbox_team_log.dataset import object_store
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.timeutil import to_wire
from dropbox_team_log.transform.events import events_to_batch
from tests.dataset.test_store import DAY, HI, LO, TEAM, TEMPLATES, ids, make_batch
from tests.dataset.test_store_s3 import bucket, objects, s3_endpoint

__all__ = ["bucket", "s3_endpoint"]  # fixtures

MiB = 2**20
PART = object_store.MIN_PART_BYTES  # S3's smallest part: big enough files stay small


def uploads(bucket: str) -> list[dict]:
    """Multipart uploads started and neither completed nor aborted: parts S3 keeps (and bills)."""
    import boto3

    return boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@contextlib.contextmanager
def random_file(size: int) -> Generator[IO[bytes], None, None]:
    with tempfile.TemporaryFile() as f:
        f.write(random.Random(size).randbytes(size))
        yield f


def test_a_large_file_goes_up_in_parts_and_reads_back_exactly(bucket):
    fs, path = object_store.filesystem(f"s3://{bucket}/day/events.parquet")
    with random_file(2 * PART + 123) as source:
        etag = object_store.upload_if(fs, path, source, None, part_bytes=PART)
        source.seek(0)
        assert fs.cat_file(path) == source.read()
    assert etag.strip('"').endswith("-3")  # S3's ETag of a three-part upload
    assert uploads(bucket) == []
    with random_file(1000) as small:  # up to a part: one PUT
        etag = object_store.upload_if(fs, path, small, etag, part_bytes=PART)
    assert "-" not in etag
    assert fs.cat_file(path) == random.Random(1000).randbytes(1000)


@pytest.mark.parametrize("state", ["appeared", "changed", "deleted"])
def test_a_multipart_upload_that_lost_the_race_is_a_conflict_and_leaves_no_parts(bucket, state):
    """What this write was merged from (no object, or the one of `read_etag`) is not what the
    key holds any more: another writer created it, replaced it or moved it aside."""
    fs, path = object_store.filesystem(f"s3://{bucket}/day/events.parquet")
    read_etag = None if state == "appeared" else object_store.put_if(fs, path, b"old", None)
    if state == "deleted":
        object_store.delete(fs, path)
    else:
        object_store.put_if(fs, path, b"theirs", read_etag)
    before = objects(bucket)
    with random_file(PART + 1) as source, pytest.raises(object_store.WriteConflict):
        object_store.upload_if(fs, path, source, read_etag, part_bytes=PART)
    assert objects(bucket) == before  # the winner's object (or its absence) stands
    assert uploads(bucket) == []  # the loser's parts are gone


class FailingRead(io.BufferedRandom):
    """A local file whose second part cannot be read (a disk error mid-upload)."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__(raw)
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads == 2:
            raise OSError(5, "Input/output error")
        return super().read(size)


def test_a_failed_upload_is_aborted_and_the_old_object_stays(bucket, tmp_path):
    fs, path = object_store.filesystem(f"s3://{bucket}/day/events.parquet")
    etag = object_store.put_if(fs, path, b"old", None)
    local = tmp_path / "merged"
    local.write_bytes(os.urandom(2 * PART + 1))
    with FailingRead(io.FileIO(local, "r+")) as source, pytest.raises(OSError, match="Input"):
        object_store.upload_if(fs, path, source, etag, part_bytes=PART)
    assert fs.cat_file(path) == b"old"
    assert uploads(bucket) == []


def test_a_dead_writers_upload_is_aborted_by_the_next_large_write_once_it_is_stale(
    bucket, monkeypatch
):
    """moto dates every upload 2010-11-10: the age limit is moved around that date."""
    import boto3

    fs, path = object_store.filesystem(f"s3://{bucket}/day/events.parquet")
    s3 = boto3.client("s3")
    dead = s3.create_multipart_upload(Bucket=bucket, Key="day/events.parquet")["UploadId"]
    s3.upload_part(
        Bucket=bucket, Key="day/events.parquet", UploadId=dead, PartNumber=1, Body=b"x" * PART
    )
    other_key = s3.create_multipart_upload(Bucket=bucket, Key="other")["UploadId"]
    years = 24 * 366
    monkeypatch.setattr(object_store, "S3_STALE_UPLOAD_HOURS", 200 * years)
    with random_file(PART + 1) as source:
        object_store.upload_if(fs, path, source, None, part_bytes=PART)
    # younger than the limit: it may be a live writer's, so it stays
    assert {u["UploadId"] for u in uploads(bucket)} == {dead, other_key}
    monkeypatch.setattr(object_store, "S3_STALE_UPLOAD_HOURS", 1)
    with random_file(PART + 2) as source:
        etag = fs.info(path)["ETag"]
        object_store.upload_if(fs, path, source, etag, part_bytes=PART)
    assert [u["UploadId"] for u in uploads(bucket)] == [other_key]  # only this key's


# --- the dataset's write of a large day -----------------------------------------------------


def padded_batch(count: int, tag: str, pad: int) -> pa.RecordBatch:
    """`count` fixture events with `pad` bytes of random base64 each (barely compressible)."""
    rng = random.Random(tag)
    events = []
    for i in range(count):
        event = dict(TEMPLATES[i % len(TEMPLATES)])
        event["timestamp"] = to_wire(LO + 1000 + i)
        event["event_type"] = {**event["event_type"], "description": f"{tag}#{i}"}
        event["padding"] = base64.b64encode(rng.randbytes(pad * 3 // 4)).decode()
        events.append(event)
    return events_to_batch(events, team_id=TEAM, ingested_at=datetime(2026, 1, 2, tzinfo=UTC))


def test_a_large_day_goes_up_a_part_at_a_time_not_read_whole(bucket, monkeypatch):
    """The merged file (~23 MB) is sent as parts: no request body, hence no bytes object the
    write holds, is larger than a part (the whole-file PUT held the whole file)."""
    monkeypatch.setattr(object_store.upload_if, "__kwdefaults__", {"part_bytes": PART})
    dataset = EventDataset(f"s3://{bucket}/events")
    bodies: list[tuple[str, int]] = []
    call_s3 = dataset.fs.call_s3

    def record_bodies(method, *args, **kwargs):  # passes every call through unchanged
        if "Body" in kwargs:
            bodies.append((method, len(kwargs["Body"])))
        return call_s3(method, *args, **kwargs)

    monkeypatch.setattr(dataset.fs, "call_s3", record_bodies)
    dataset.write_day(DAY, [(LO, LO + 3600)], [padded_batch(320, "big", 100_000)], fetched_at=HI)
    size = dataset.fs.info(dataset.hour_path(DAY, 0))["size"]
    assert size > 4 * PART
    assert max(length for _, length in bodies) <= PART, bodies
    assert [method for method, _ in bodies] == ["upload_part"] * -(-size // PART)
    assert sum(length for _, length in bodies) == size
    assert ids(dataset.read_day(DAY)) == [f"big#{i}" for i in range(320)]
    assert uploads(bucket) == []


def test_a_large_day_that_loses_the_race_merges_again_and_nothing_is_lost(bucket, monkeypatch):
    """As with a PUT: writer B commits between A's read and A's CompleteMultipartUpload."""
    monkeypatch.setattr(object_store.upload_if, "__kwdefaults__", {"part_bytes": PART})
    url = f"s3://{bucket}/events"
    writer_a, writer_b = EventDataset(url), EventDataset(url)
    writer_a.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1], "first")], fetched_at=HI)
    original = object_store.multipart_upload_if
    outcomes: list[str] = []

    def upload_after_b_commits(fs, path, source, etag, *, part_bytes):
        if not outcomes:
            outcomes.append("b-commits")
            writer_b.write_day(
                DAY, [(LO + 100, LO + 110)], [make_batch([LO + 101], "b")], fetched_at=HI
            )
        try:
            etag = original(fs, path, source, etag, part_bytes=part_bytes)
        except object_store.WriteConflict:
            outcomes.append("conflict")
            raise
        outcomes.append("multipart")
        return etag

    monkeypatch.setattr(object_store, "multipart_upload_if", upload_after_b_commits)
    writer_a.write_day(DAY, [(LO + 1000, HI)], [padded_batch(100, "a", 100_000)], fetched_at=HI)
    assert outcomes == ["b-commits", "conflict", "multipart"]
    assert ids(writer_a.read_day(DAY)) == ["first#0", "b#0"] + [f"a#{i}" for i in range(100)]
    assert writer_a.read_coverage(DAY).intervals == (
        (LO, LO + 10, HI),
        (LO + 100, LO + 110, HI),
        (LO + 1000, HI, HI),
    )
    assert uploads(bucket) == []
