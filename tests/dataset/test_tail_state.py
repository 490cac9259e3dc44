"""The tail's chain state beside the data: a JSON file per key under `<root>/_tail/`, replaced
whole and only from the version the writer read, locally (flock + rename) and on S3 (moto,
conditional PUTs); racing writers: exactly one wins; damaged state: an error that says the fix.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from dropbox_team_log.dataset.object_store import WriteConflict
from dropbox_team_log.dataset.tail_state import ChainState, TailStateError, TailStateStore
from tests.dataset.test_store_s3 import bucket, objects, s3_endpoint

__all__ = ["bucket", "s3_endpoint"]  # fixtures

STATE = ChainState(chain="c1", seq=0, start=1_000, as_of=2_000, cursor="CURSOR" * 40 + "END12345")
KEY = "dbtid:AAD4fbG7"


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "dataset")
    name = request.getfixturevalue("bucket")
    return f"s3://{name}/team-log"


def test_round_trip_and_versions(root):
    store = TailStateStore(root)
    assert store.read(KEY) is None
    v1 = store.write(KEY, STATE, expected=None)
    got = store.read(KEY)
    assert got is not None and got.state == STATE and got.version == v1
    nxt = ChainState("c1", 1, 1_000, 2_300, "NEXT")
    v2 = store.write(KEY, nxt, expected=v1)
    assert v2 != v1 and store.read(KEY).state == nxt
    assert store.read("other-team") is None  # one file per key
    assert store.path(KEY).endswith(f"/_tail/{KEY}.json")


def test_a_stale_version_or_a_second_creator_loses(root):
    store = TailStateStore(root)
    with pytest.raises(WriteConflict):
        store.write(KEY, STATE, expected="not-there")  # nothing stored yet
    v1 = store.write(KEY, STATE, expected=None)
    with pytest.raises(WriteConflict):
        store.write(KEY, STATE, expected=None)  # another run created it first
    v2 = store.write(KEY, ChainState("c1", 1, 1_000, 2_100, "B"), expected=v1)
    with pytest.raises(WriteConflict):
        store.write(KEY, ChainState("c1", 1, 1_000, 2_200, "C"), expected=v1)  # lost race
    assert store.read(KEY).state.cursor == "B" and store.read(KEY).version == v2


def test_racing_writers_exactly_one_wins(root):
    store = TailStateStore(root)
    v1 = store.write(KEY, STATE, expected=None)
    barrier = threading.Barrier(6)

    def advance(i: int) -> bool:
        barrier.wait()
        try:
            store.write(KEY, ChainState("c1", 1, 1_000, 2_000 + i, f"W{i}"), expected=v1)
        except WriteConflict:
            return False
        return True

    with ThreadPoolExecutor(6) as pool:
        won = list(pool.map(advance, range(6)))
    assert won.count(True) == 1
    winner = won.index(True)
    assert store.read(KEY).state.cursor == f"W{winner}"


def test_clear_restarts_the_tail(root):
    store = TailStateStore(root)
    assert store.clear(KEY) is False
    v1 = store.write(KEY, STATE, expected=None)
    with pytest.raises(WriteConflict):
        store.clear(KEY, expected="stale")
    assert store.clear(KEY, expected=v1) is True
    assert store.read(KEY) is None
    store.write(KEY, STATE, expected=None)  # a new chain may start


def test_damaged_state_names_the_file_and_the_fix(root):
    store = TailStateStore(root)
    store.write(KEY, STATE, expected=None)
    with store.fs.open(store.path(KEY), "wb") as f:
        f.write(b'{"format": 1, "chain": "c1"')
    with pytest.raises(TailStateError, match="delete it to restart the tail") as err:
        store.read(KEY)
    assert STATE.cursor not in str(err.value)


@pytest.mark.parametrize("key", ["", "../x", "a/b", ".hidden", "x" * 201, "a b"])
def test_keys_are_never_paths(tmp_path, key):
    with pytest.raises(ValueError, match="tail state key"):
        TailStateStore(str(tmp_path)).path(key)


def test_the_cursor_is_never_shown_whole():
    assert STATE.cursor not in repr(STATE)
    assert STATE.cursor_tail == "...END12345"
    with pytest.raises(ValueError):
        ChainState("c1", 0, 2_000, 1_000, "x")  # as_of before start


def test_state_stays_outside_the_readers_glob(tmp_path):
    store = TailStateStore(str(tmp_path))
    store.write(KEY, STATE, expected=None)
    assert not list(tmp_path.glob("event_date=*/*.parquet"))
    assert sorted(p.name for p in (tmp_path / "_tail").iterdir()) == [
        f".{KEY}.json.lock",
        f"{KEY}.json",
    ]


def test_s3_holds_only_the_state_object(bucket):
    store = TailStateStore(f"s3://{bucket}/team-log")
    store.write(KEY, STATE, expected=None)
    assert sorted(objects(bucket)) == [f"team-log/_tail/{KEY}.json"]
