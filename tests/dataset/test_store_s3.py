"""The dataset on S3: the real DAGs write s3://bucket/prefix on a local S3 server (moto).

Same content as the local-path dataset (read back with DuckDB and with pyarrow's own S3 client),
nothing but day files ever visible, writers racing on one day end exact, a killed writer leaves
nothing, a re-run changes nothing, and roots that cannot be written are refused up front.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from dropbox_team_log.dataset import object_store
from dropbox_team_log.dataset.files import write_text
from dropbox_team_log.dataset.ledger import Coverage
from dropbox_team_log.dataset.root_check import OutputRootError, check_output_root
from dropbox_team_log.dataset.store import EventDataset
from dropbox_team_log.settings import DAY_FILE_AFTER_HOURS
from tests.dataset.test_store import DAY, HI, LO, ids, make_batch, spawn, wait_for
from tests.helpers.dataset import read_dataset, write_day_file
from tests.helpers.pipeline import dataset_raws, event_calls, fresh_dag, multiset, run_dag
from tests.test_pipeline import T0, check_exact, connected, dagbag, emu

__all__ = ["connected", "dagbag", "emu"]  # fixtures shared with test_pipeline

KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
BACKFILL_DAYS = 3  # the oldest day settled (one day file), the last ones hour files


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 on a free loopback port; the AWS chain of this process (and its children)
    points at it through the standard environment variables, as a deployment would."""
    from moto.s3.responses import S3Response
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    mp = pytest.MonkeyPatch()
    # S3 evaluates a PUT's If-Match / If-None-Match and stores the object as one step; moto
    # checks, then stores, on a threaded server. Make its PUT one step too, as on S3, so racing
    # writers meet the store they are designed for (the dataset code is not touched).
    one_put_at_a_time = threading.Lock()
    put_object = S3Response.put_object

    def atomic_put_object(self, *args, **kwargs):
        with one_put_at_a_time:
            return put_object(self, *args, **kwargs)

    mp.setattr(S3Response, "put_object", atomic_put_object)
    # S3 also evaluates If-Match on CompleteMultipartUpload (moto only If-None-Match there):
    # checked here, in the same one step, as S3 documents it.
    mp.setattr(S3Response, "_key_response_post", complete_if_match(one_put_at_a_time))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        **KEYS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance role off loopback
    }.items():
        mp.setenv(name, value)
    mp.delenv("AWS_PROFILE", raising=False)
    import s3fs

    # s3fs keeps its clients by their options: one made for another module's server would
    # still talk to that (stopped) server.
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield endpoint
    finally:
        mp.undo()
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()


def complete_if_match(one_write_at_a_time: threading.Lock):
    """moto's handler of POST on a key, with CompleteMultipartUpload checking `If-Match` as S3
    does (412 PreconditionFailed on another ETag, 404 NoSuchKey when the key is gone), in one
    step with the completion."""
    from moto.s3.exceptions import MissingKey, PreconditionFailed
    from moto.s3.responses import S3Response

    moto_key_post = S3Response._key_response_post

    @functools.wraps(moto_key_post)  # __wrapped__: moto's own, for the tests of a lax store
    def key_post(self, request, body, bucket_name, query, key_name):
        if "uploadId" not in query:  # not a completion
            return moto_key_post(self, request, body, bucket_name, query, key_name)
        with one_write_at_a_time:
            if_match = self.headers.get("If-Match")
            if if_match:
                existing = self.backend.get_object(bucket_name, key_name)
                if existing is None:
                    raise MissingKey(key=key_name)
                if existing.etag.strip('"') != if_match.strip('"'):
                    raise PreconditionFailed("If-Match")
            return moto_key_post(self, request, body, bucket_name, query, key_name)

    return key_post


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """A fresh bucket per test."""
    import boto3

    name = f"dtl-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def objects(bucket: str) -> dict[str, str]:
    """Every key in the bucket with its ETag: what any reader of the store can see."""
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def day_keys(bucket: str, prefix: str) -> list[str]:
    return sorted(k for k in objects(bucket) if k.startswith(f"{prefix}/event_date="))


def pyarrow_raws(endpoint: str, path: str) -> list[str]:
    """raw_event of every row, read by Arrow's own S3 client (not s3fs) with hive partitions."""
    fs = pafs.S3FileSystem(
        endpoint_override=endpoint,
        access_key=KEYS["AWS_ACCESS_KEY_ID"],
        secret_key=KEYS["AWS_SECRET_ACCESS_KEY"],
        region="us-east-1",
    )
    dataset = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    return dataset.to_table(columns=["raw_event"]).column("raw_event").to_pylist()


# --- the real DAGs on S3 --------------------------------------------------------------------


def test_dags_on_s3_match_the_local_dataset_and_reruns_change_nothing(
    s3_endpoint, bucket, emu, dagbag, connected, tmp_path, monkeypatch
):
    local, url = tmp_path / "dataset", f"s3://{bucket}/team-log"
    conf = {"days": BACKFILL_DAYS}
    seconds = {}
    for name, root in (("local", str(local)), ("S3", url)):
        monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", root)
        started = time.perf_counter()
        run_dag(emu, "dropbox_team_log_backfill", T0, conf)
        seconds[name] = time.perf_counter() - started
    lo = T0 - timedelta(days=BACKFILL_DAYS)
    check_exact(local, emu, lo, T0, as_of=T0)

    # The store holds day files and the team's card only: no temp object, probe or lock.
    keys = day_keys(bucket, "team-log")
    assert sorted(objects(bucket)) == sorted([*keys, "team-log/_teams/dropbox_team_default.json"])
    assert keys == sorted(
        str(p.relative_to(tmp_path)).replace("dataset", "team-log", 1)
        for p in local.rglob("event_date=*/events*.parquet")
    )
    assert len({key.rsplit("/", 1)[0] for key in keys}) == BACKFILL_DAYS + 1
    # Days settled at the backfill's as_of are one day file each; the last ones hour files.
    settled = T0 - timedelta(hours=DAY_FILE_AFTER_HOURS)
    names = {key.rsplit("/", 1)[1] for key in keys}
    assert "events.parquet" in names and names != {"events.parquet"}  # both kinds
    for key in keys:
        folder, name = key.rsplit("/", 1)
        end = datetime.fromisoformat(folder.rpartition("=")[2]).replace(tzinfo=UTC)
        whole = end + timedelta(days=1) <= settled
        assert (name == "events.parquet") == whole, key

    # Same rows (duplicates counted) through DuckDB and through Arrow's S3 client.
    want = multiset(dataset_raws(str(local), lo, T0))
    assert multiset(read_dataset(url).column("raw_event").to_pylist()) == want
    assert multiset(pyarrow_raws(s3_endpoint, f"{bucket}/team-log")) == want
    # Same coverage, day by day.
    on_disk, on_s3 = EventDataset(str(local)), EventDataset(url)
    assert on_s3.days() == on_disk.days()
    for day in on_disk.days():
        assert on_s3.read_coverage(day) == on_disk.read_coverage(day)

    # A re-run finds nothing due: not one object rewritten, not one API call for events.
    before, calls = objects(bucket), event_calls(emu)
    run_dag(emu, "dropbox_team_log_backfill", T0, conf)
    assert objects(bucket) == before
    assert event_calls(emu) == calls

    # The incremental DAG on both roots, 4 h later: still the same rows and coverage.
    for root in (str(local), url):
        monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", root)
        run_dag(emu, "dropbox_team_log_incremental", T0 + timedelta(hours=4))
    assert objects(bucket) != before, "the incremental run wrote nothing"
    tail_keys = [k for k in objects(bucket) if k.startswith("team-log/_tail/")]
    assert [k.rsplit("/", 1)[1].endswith(".json") for k in tail_keys] == [True]  # the chain
    card = "team-log/_teams/dropbox_team_default.json"  # the team's card
    assert sorted(set(objects(bucket)) - {*tail_keys, card}) == day_keys(bucket, "team-log")
    assert multiset(pyarrow_raws(s3_endpoint, f"{bucket}/team-log")) == multiset(
        dataset_raws(str(local), lo, T0 + timedelta(days=1))
    )
    assert on_s3.days() == on_disk.days()
    for day in on_disk.days():
        assert on_s3.read_coverage(day) == on_disk.read_coverage(day)
    print(
        f"\nbackfill DAG, {BACKFILL_DAYS} days: local {seconds['local']:.1f}s (first: warm-up), "
        f"S3 (moto) {seconds['S3']:.1f}s"
    )


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("s3://no-such-bucket-dtl/x", "bucket 'no-such-bucket-dtl' does not exist"),
        ("gcs://bucket/x", "not installed"),
        ("ftpx://host/x", "unknown protocol 'ftpx'"),
    ],
)
def test_plan_refuses_a_bad_root_before_any_api_call(
    s3_endpoint, emu, dagbag, connected, monkeypatch, capfd, root, message
):
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", root)
    emu.set_clock(T0)
    calls = event_calls(emu)
    run = fresh_dag("dropbox_team_log_backfill").test(logical_date=T0, run_conf={"days": 2})
    assert run.state == "failed"
    seen = capfd.readouterr()
    assert message in seen.out + seen.err
    assert event_calls(emu) == calls


# --- concurrency and crashes ----------------------------------------------------------------


def test_a_writer_that_loses_the_race_merges_again_and_nothing_is_lost(
    bucket, monkeypatch: pytest.MonkeyPatch
):
    """Writer A reads the day, then B commits, then A's conditional PUT fails: A re-reads B's
    file and merges into it, exactly as if a lock had made it wait."""
    url = f"s3://{bucket}/events"
    writer_a, writer_b = EventDataset(url), EventDataset(url)
    writer_a.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1], "first")], fetched_at=HI)
    original = object_store.put_if
    outcomes: list[str] = []

    def put_after_b_commits(fs, path, data, etag):
        if not outcomes:  # A's first PUT: B sneaks in between A's read and A's PUT
            outcomes.append("b-commits")
            writer_b.write_day(
                DAY, [(LO + 100, LO + 110)], [make_batch([LO + 101], "b")], fetched_at=HI
            )
        try:
            etag = original(fs, path, data, etag)
        except object_store.WriteConflict:
            outcomes.append("conflict")
            raise
        outcomes.append("put")
        return etag

    monkeypatch.setattr(object_store, "put_if", put_after_b_commits)
    result = writer_a.write_day(
        DAY, [(LO + 200, LO + 210)], [make_batch([LO + 201], "a")], fetched_at=HI
    )
    assert outcomes == ["b-commits", "put", "conflict", "put"]  # B put, A lost, A retried
    assert ids(writer_a.read_day(DAY)) == ["first#0", "b#0", "a#0"]
    assert result.rows_before == 2 and result.rows_after == 3
    assert writer_a.read_coverage(DAY).intervals == (
        (LO, LO + 10, HI),
        (LO + 100, LO + 110, HI),
        (LO + 200, LO + 210, HI),
    )


def test_concurrent_process_writers_on_one_day_end_exact(bucket):
    target = SimpleNamespace(root=f"s3://{bucket}/events")
    procs = [spawn(target, "slow", LO + 100, "p1"), spawn(target, "slow", LO + 1000, "p2")]
    for proc in procs:
        wait_for(proc, "DONE")
        assert proc.wait(60) == 0
    dataset = EventDataset(target.root)
    assert sorted(ids(dataset.read_day(DAY))) == sorted(
        [f"p1#{i}" for i in range(40)] + [f"p2#{i}" for i in range(40)]
    )
    assert dataset.read_coverage(DAY).intervals == (
        (LO + 100, LO + 140, HI),
        (LO + 1000, LO + 1040, HI),
    )
    assert sorted(objects(bucket)) == ["events/event_date=2026-01-01/events-00.parquet"]


def test_writer_killed_mid_write_leaves_nothing_visible(bucket):
    url = f"s3://{bucket}/events"
    dataset = EventDataset(url)
    dataset.write_day(DAY, [(LO, LO + 10)], [make_batch([LO + 1, LO + 2], "old")], fetched_at=HI)
    before = objects(bucket)
    proc = spawn(SimpleNamespace(root=url), "hang", LO + 100, "killed")
    try:
        wait_for(proc, "WROTE")  # a row group of the new file is written; the child now sleeps
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert objects(bucket) == before  # no temp object, no partial upload, no lock
    assert ids(dataset.read_day(DAY)) == ["old#0", "old#1"]
    assert ids(read_dataset(url)) == ["old#0", "old#1"]
    assert dataset.read_coverage(DAY) == Coverage(((LO, LO + 10, HI),))
    # Nothing to expire or clean: the next writer goes straight ahead.
    dataset.write_day(DAY, [(LO + 100, LO + 110)], [make_batch([LO + 101], "next")], fetched_at=HI)
    assert ids(dataset.read_day(DAY)) == ["old#0", "old#1", "next#0"]


def test_a_text_file_on_s3_is_one_put_of_its_final_key(bucket):
    url = f"s3://{bucket}/prefix/_reports/report.html"
    assert write_text(url, "first") == url
    assert write_text(url, "second ✓") == url
    assert list(objects(bucket)) == ["prefix/_reports/report.html"]
    fs, path = object_store.filesystem(url)
    assert fs.cat_file(path).decode("utf-8") == "second ✓"


# --- output root validation -----------------------------------------------------------------


def test_a_writable_s3_root_passes_and_leaves_no_probe_behind(bucket):
    check_output_root(f"s3://{bucket}/prefix")
    assert objects(bucket) == {}


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("s3://no-such-bucket-dtl/prefix", "bucket 'no-such-bucket-dtl' does not exist"),
        ("s3://", "names no bucket"),
        ("gcs://bucket/prefix", "needs the filesystem package for gcs://"),
        ("ftpx://host/prefix", "unknown protocol 'ftpx'"),
        ("memory://bucket/prefix", "memory:// is not supported"),
        ("", "empty"),
    ],
)
def test_bad_roots_are_refused_with_what_to_fix(s3_endpoint, root, message):
    with pytest.raises(OutputRootError, match=message):
        check_output_root(root)


def test_s3_without_credentials_says_so(bucket, monkeypatch):
    import s3fs

    for name in KEYS:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    s3fs.S3FileSystem.clear_instance_cache()  # a cached client would still hold the keys
    try:
        with pytest.raises(OutputRootError, match="no usable AWS credentials"):
            check_output_root(f"s3://{bucket}/prefix")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


def test_local_root_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputRootError, match="is a file, not a folder"):
        check_output_root(str(tmp_path / "file" / "dataset"))
    check_output_root(str(tmp_path / "new" / "dataset"))  # missing folders are created later
    assert not (tmp_path / "new").exists()  # ...but not by the check


@contextlib.contextmanager
def as_unprivileged_user() -> Generator[None, None, None]:
    """root may write anywhere: act as `nobody` so permissions mean what they say."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_local_root_in_a_read_only_folder_is_refused():
    base = tempfile.mkdtemp(prefix="dtl-ro-")  # not under pytest's 0700 tmp: nobody must reach it
    try:
        # the point of the test: modes that let `nobody` in, and one folder it may not write
        os.chmod(base, 0o755)  # ruff: ignore[bad-file-permissions]
        read_only, writable = os.path.join(base, "ro"), os.path.join(base, "rw")
        os.mkdir(read_only, 0o555)
        os.mkdir(writable)
        os.chmod(read_only, 0o555)  # ruff: ignore[bad-file-permissions]
        os.chmod(writable, 0o777)  # ruff: ignore[bad-file-permissions]
        with as_unprivileged_user():
            check_output_root(os.path.join(writable, "dataset"))  # the same check passes here
            with pytest.raises(OutputRootError, match="is not writable"):
                check_output_root(os.path.join(read_only, "dataset"))
            with pytest.raises(OutputRootError, match="is not writable"):
                check_output_root(read_only)
    finally:
        for sub in ("ro", "rw"):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(os.path.join(base, sub))
        os.rmdir(base)


def test_a_write_on_s3_puts_only_the_hour_objects_its_ranges_touch(bucket):
    dataset = EventDataset(f"s3://{bucket}/events")
    rows = make_batch(list(range(LO + 5, HI, 600)), "day")
    dataset.write_day(DAY, [(LO, HI)], [rows], fetched_at=HI)
    before = objects(bucket)
    assert sorted(before) == [f"events/event_date={DAY}/events-{h:02d}.parquet" for h in range(24)]
    late = make_batch([LO + 13 * 3600 + 7], "late")
    dataset.write_day(DAY, [(LO + 13 * 3600, LO + 13 * 3600 + 900)], [late], fetched_at=HI + 1)
    after = objects(bucket)
    assert sorted(after) == sorted(before)
    assert [k for k in after if after[k] != before[k]] == [
        f"events/event_date={DAY}/events-13.parquet"
    ]
    assert ids(read_dataset(f"s3://{bucket}/events")).count("late#0") == 1
    assert dataset.read_day(DAY).num_rows == 144 - 2 + 1


def test_a_settled_day_on_s3_is_one_object_and_a_late_event_lands_in_it_once(bucket):
    dataset = EventDataset(f"s3://{bucket}/events")
    settled = HI + DAY_FILE_AFTER_HOURS * 3600
    rows = make_batch(list(range(LO + 5, HI, 600)), "day")
    result = dataset.write_day(DAY, [(LO, HI)], [rows], fetched_at=settled)
    assert result.files_written == 1
    assert sorted(objects(bucket)) == [f"events/event_date={DAY}/events.parquet"]
    late = make_batch([LO + 13 * 3600 + 7], "late")
    dataset.write_day(DAY, [(LO + 13 * 3600, LO + 13 * 3600 + 900)], [late], fetched_at=settled + 1)
    assert sorted(objects(bucket)) == [f"events/event_date={DAY}/events.parquet"]
    assert ids(read_dataset(f"s3://{bucket}/events")).count("late#0") == 1
    assert dataset.read_day(DAY).num_rows == 144 - 2 + 1
    assert dataset.read_coverage(DAY).intervals == (
        (LO, LO + 13 * 3600, settled),
        (LO + 13 * 3600, LO + 13 * 3600 + 900, settled + 1),
        (LO + 13 * 3600 + 900, HI, settled),
    )


def test_a_day_file_on_s3_stays_one_object(bucket):
    dataset = EventDataset(f"s3://{bucket}/events")
    old = make_batch([LO + 5, LO + 13 * 3600 + 1], "old")
    write_day_file(dataset, DAY, [(LO, HI)], [old], fetched_at=HI)
    late = make_batch([LO + 13 * 3600 + 2], "late")
    dataset.write_day(DAY, [(LO + 13 * 3600, LO + 14 * 3600)], [late], fetched_at=HI + 1)
    assert sorted(objects(bucket)) == [f"events/event_date={DAY}/events.parquet"]
    assert ids(read_dataset(f"s3://{bucket}/events")) == ["old#0", "late#0"]
    assert dataset.read_coverage(DAY).intervals == (
        (LO, LO + 13 * 3600, HI),
        (LO + 13 * 3600, LO + 14 * 3600, HI + 1),
        (LO + 14 * 3600, HI, HI),
    )
