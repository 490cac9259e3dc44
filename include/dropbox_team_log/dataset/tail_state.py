"""The tail's chain state, kept beside the data: `<root>/_tail/<key>.json`, one per team.

What a tail needs to poll on and to know which hour files its deltas may touch: the cursor, the
chain's id, how many polls it has applied (`seq`), where it started (`start`, S) and up to when
its events are stored (`as_of`, X). The folder starts with `_`, outside the readers' glob
(`event_date=*/*.parquet`) and skipped by pyarrow's and DuckDB's discovery.

A state is replaced whole and atomically, and only on condition that it is still the version
the writer read (`write(..., expected=version)`), so two runs polling one chain cannot both
advance it: the loser gets `WriteConflict` and its poll is not committed. Locally the condition
is checked under an flock beside the file and the new file renamed into place
(files.write_atomically); on S3 it is the PUT's own `If-Match` / `If-None-Match`, as for the
day files (object_store.put_if). A version is the object's ETag on S3, a digest of the bytes
locally; None means "no state".

Cursor strings are not secrets, but they are long and opaque: nothing here logs or raises them
whole (`ChainState.cursor_tail`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import uuid
from dataclasses import dataclass, field

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log.dataset import object_store
from dropbox_team_log.dataset.columns import conform
from dropbox_team_log.dataset.files import FileDayLock, remove_stale_temps, write_atomically
from dropbox_team_log.dataset.object_store import WriteConflict
from dropbox_team_log.dataset.roots import glob_under, literal
from dropbox_team_log.errors import PermanentError

TAIL_DIR = "_tail"
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")
_FORMAT = 1


@dataclass(frozen=True)
class TailTag:
    """What an hour file's footer says about the tail: its rows are current to poll `seq` of
    chain `chain` (every event of the hour the chain delivered up to that poll is in it).

    A replace write clears it (the file then answers by its coverage alone); the tail adds a
    poll's rows to an hour file only while its tag is the chain's and not ahead of the chain's
    committed state (`may_add`).
    """

    chain: str
    seq: int

    def to_json(self) -> bytes:
        return orjson.dumps({"chain": self.chain, "seq": self.seq})

    @classmethod
    def from_json(cls, data: bytes | str) -> TailTag:
        value = orjson.loads(data)
        if not isinstance(value, dict):
            raise ValueError(f"tail tag must be an object, got {type(value).__name__}")
        chain, seq = value.get("chain"), value.get("seq")
        if not isinstance(chain, str) or not chain:
            raise ValueError("tail tag: chain must be a non-empty string")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"tail tag: seq must be a non-negative integer, got {seq!r}")
        return cls(chain, seq)


class TailStateError(PermanentError):
    """A tail state file cannot be read as one: it is removed by hand (the tail restarts)."""


@dataclass(frozen=True)
class ChainState:
    """One cursor chain: where it started, how far its events are stored, how to go on."""

    chain: str  # random id of the chain; hour files it touched carry it in their footer
    seq: int  # polls applied to the dataset (0: only the chain's start)
    start: int  # S, epoch seconds: the chain holds every event with timestamp >= S
    as_of: int  # X, epoch seconds: every event visible by X is stored
    cursor: str = field(repr=False)
    #: The time of the run that committed this state (X may lie past it: events up to the
    #: API's "now" are stored): a run older than it is a replay.
    run_as_of: int | None = None
    #: Late rows (of hours before the previous one) polled but not yet added to their hour
    #: files: the name of their file under `_tail/` (`write_pending`), None when there are none;
    #: and the X of the last poll that added them all.
    pending: str | None = None
    flushed_at: int | None = None
    #: A poll in progress: who runs it (a run id) and since when (epoch s); None when idle.
    claim: str | None = None
    claimed_at: int | None = None

    def __post_init__(self) -> None:
        for name in ("seq", "start", "as_of"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not isinstance(self.chain, str) or not self.chain:
            raise ValueError("chain must be a non-empty string")
        if not isinstance(self.cursor, str) or not self.cursor:
            raise ValueError("cursor must be a non-empty string")
        if self.as_of < self.start:
            raise ValueError(f"as_of {self.as_of} is before the chain's start {self.start}")

    @property
    def cursor_tail(self) -> str:
        """The cursor's last 8 characters: enough to tell two apart in a log line."""
        return f"...{self.cursor[-8:]}"

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "format": _FORMAT,
                "chain": self.chain,
                "seq": self.seq,
                "start": self.start,
                "as_of": self.as_of,
                "cursor": self.cursor,
                "run_as_of": self.run_as_of,
                "pending": self.pending,
                "flushed_at": self.flushed_at,
                "claim": self.claim,
                "claimed_at": self.claimed_at,
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes, path: str) -> ChainState:
        try:
            value = orjson.loads(data)
            if value.get("format") != _FORMAT:
                raise ValueError(f"unknown format {value.get('format')!r}")
            return cls(
                chain=value["chain"],
                seq=value["seq"],
                start=value["start"],
                as_of=value["as_of"],
                cursor=value["cursor"],
                run_as_of=value.get("run_as_of"),
                pending=value.get("pending"),
                flushed_at=value.get("flushed_at"),
                claim=value.get("claim"),
                claimed_at=value.get("claimed_at"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TailStateError(
                f"tail state {path} is not a chain state ({type(exc).__name__}: "
                f"{str(exc)[:120]}): delete it to restart the tail (nothing is lost: the hours "
                "its chain covered are settled by the normal schedule)"
            ) from None


@dataclass(frozen=True)
class StoredState:
    state: ChainState
    version: str  # what `write(expected=...)` compares with


class TailStateStore:
    """Chain states under `<root>/_tail/`, one JSON file per key, replaced conditionally."""

    def __init__(self, root: str) -> None:
        self.root = str(root).rstrip("/")
        self.fs, self._path = object_store.filesystem(self.root)
        self.is_object_store = object_store.is_object_store(self.fs)
        if not self.is_object_store and not isinstance(self.fs, LocalFileSystem):
            raise ValueError(f"{self.root}: the tail state needs a local folder or S3")

    def path(self, key: str) -> str:
        """The state file of `key` (a team or connection id: letters, digits, `_.:-`)."""
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(
                f"tail state key {key!r} must be 1-200 letters, digits or _ . : - (not first)"
            )
        return f"{self._path}/{TAIL_DIR}/{key}.json"

    def read(self, key: str) -> StoredState | None:
        """The stored state of `key` and its version, or None if there is none."""
        path = self.path(key)
        found = self._read_raw(path)
        if found is None:
            return None
        data, version = found
        return StoredState(ChainState.from_json(data, path), version)

    def write(self, key: str, state: ChainState, *, expected: str | None) -> str:
        """Replace `key`'s state by `state` if it is still at version `expected` (None: if it
        has none); the new version. `WriteConflict` when another writer moved it first."""
        path = self.path(key)
        data = state.to_json()
        if self.is_object_store:
            return object_store.put_if(self.fs, path, data, expected)
        with self._lock(path):
            self._check_local(path, expected)
            remove_stale_temps(self.fs, path)
            with write_atomically(self.fs, path) as sink:
                sink.write(data)
        return _digest(data)

    def clear(self, key: str, *, expected: str | None = None) -> bool:
        """Remove `key`'s state (the next run starts a new chain); with `expected`, only if it
        is still that version. Whether there was one."""
        path = self.path(key)
        if self.is_object_store:
            found = self._read_raw(path)
            if found is None:
                return False
            if expected is not None and found[1] != expected:
                raise WriteConflict(path)
            object_store.delete(self.fs, path)
            return True
        with self._lock(path):
            if expected is not None:
                self._check_local(path, expected)
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                return False
            return True

    # --- late rows waiting for their hour files ---

    def write_pending(self, key: str, table: pa.Table) -> str:
        """Store late rows under a new name (written whole before the state names it: a file
        no committed state names is a crashed attempt's, removed by `drop_pending`)."""
        name = f"{key}.pending.{uuid.uuid4().hex[:12]}.parquet"
        path = f"{self._path}/{TAIL_DIR}/{name}"
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        if self.is_object_store:
            object_store.put_if(self.fs, path, sink.getvalue(), None)
        else:
            with write_atomically(self.fs, path) as out:
                out.write(sink.getvalue())
        return name

    def read_pending(self, key: str, name: str) -> pa.Table:
        self.path(key)  # checks the key
        if "/" in name or not name.startswith(f"{key}.pending."):
            raise TailStateError(f"tail state of {key} names a foreign pending file {name!r}")
        path = f"{self._path}/{TAIL_DIR}/{name}"
        with self.fs.open(path, "rb") as f:
            return conform(pq.read_table(f), path)

    def drop_pending(self, key: str, *, keep: str | None) -> None:
        """Remove `key`'s pending files but `keep` (the one its committed state names)."""
        folder = f"{self._path}/{TAIL_DIR}"
        pattern = glob_under(folder, f"{literal(key)}.pending.*.parquet")
        for path in self.fs.glob(pattern):
            if path.rsplit("/", 1)[-1] != keep:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path)

    def _read_raw(self, path: str) -> tuple[bytes, str] | None:
        try:
            with self.fs.open(path, "rb") as f:  # s3fs pins the ETag it opened: one version
                data = f.read()
                version = str(f.details["ETag"]) if self.is_object_store else _digest(data)
        except FileNotFoundError:
            return None
        return data, version

    def _check_local(self, path: str, expected: str | None) -> None:
        found = self._read_raw(path)
        current = None if found is None else found[1]
        if current != expected:
            raise WriteConflict(path)

    def _lock(self, path: str) -> FileDayLock:
        folder, _, name = path.rpartition("/")
        return FileDayLock(f"{folder}/.{name}.lock")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]
