"""Files that readers never see half-written: the day lock, private folders, atomic replace.

`write_atomically` is the one place a file of the dataset gets its name. What is written goes
first to a hidden temp file beside its target (`.<name>.<random hex>.tmp`), which no reader's
glob matches (`*.parquet`; pyarrow and Spark also skip dot files). Locally the temp file is
flushed and fsynced, then renamed onto the target with `os.replace`, which POSIX makes atomic: a
reader that opens the target gets the old file or the new one, never a partial one. The folder is
fsynced after the rename, so the rename itself survives a crash. A writer killed before the
rename leaves only its temp file behind; the next writer of that file removes it while holding
the file's lock (`remove_stale_temps`).

Folders are created DIR_MODE and files FILE_MODE (less the umask): the log names people, so
others get no access. S3 has no rename and needs none: see `store.py` for its write path.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Generator
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log.dataset import object_store
from dropbox_team_log.dataset.roots import glob_under, literal

DIR_MODE = 0o750
FILE_MODE = 0o640

_TEMP_SUFFIX = ".tmp"


class FileDayLock:
    """Exclusive lock on a local lock file (`fcntl.flock`), created with its folders if need be.

    flock belongs to the open file description, so it serialises threads of one process as well
    as processes, and the kernel drops it when a killed writer dies. An object-store lock can
    stand in for this class via `EventDataset(lock_factory=...)`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> FileDayLock:
        make_dirs(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def lock_if_local(fs: fsspec.AbstractFileSystem, path: str) -> contextlib.AbstractContextManager:
    """`FileDayLock(path)` on a local filesystem; no lock on an object store, whose one writer
    of such a file is a DAG whose runs never overlap."""
    return FileDayLock(path) if isinstance(fs, LocalFileSystem) else contextlib.nullcontext()


def make_dirs(path: str) -> None:
    """Create a folder (and parents) so each folder itself gets DIR_MODE despite makedirs."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        make_dirs(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, DIR_MODE)


def fsync_dir(path: str) -> None:
    """Make a rename in this folder durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _split(path: str) -> tuple[str, str]:
    folder, _, name = path.rpartition("/")
    return folder, name


@contextlib.contextmanager
def write_atomically(
    fs: fsspec.AbstractFileSystem, path: str, *, durable: bool = True
) -> Generator[IO[bytes], None, None]:
    """A binary sink that becomes `path` only if the `with` block ends without an error.

    Locally: a temp file beside `path` (folders created as needed), fsynced and renamed onto it.
    Without `durable` nothing is fsynced (for files a re-run rewrites): readers still never see
    a partial file, but after a power loss the file may be missing or incomplete.
    On another fsspec store (one whose writers a `lock_factory` serialises): a temp file there,
    moved onto `path` (a copy and a delete). Either way the temp file is gone afterwards.
    """
    folder, name = _split(path)
    temp = f"{folder}/.{name}.{uuid.uuid4().hex}{_TEMP_SUFFIX}"
    if not isinstance(fs, LocalFileSystem):
        try:
            with fs.open(temp, "wb") as sink:
                yield sink
            fs.mv(temp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(temp)
        return
    make_dirs(folder)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as sink:
            yield sink
            sink.flush()
            if durable:
                os.fsync(sink.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    if durable:
        fsync_dir(folder)


def remove_stale_temps(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove the temp files killed writers left beside `path` (only while holding its lock);
    the folder taken literally, so a `[`, `*` or `?` in the root never reaches another folder."""
    folder, name = _split(path)
    for temp in fs.glob(glob_under(folder, f".{literal(name)}.*{_TEMP_SUFFIX}")):
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(temp)


def read_text(path: str) -> str | None:
    """A UTF-8 text file (a local path or a URL), or None when there is none."""
    fs, target = object_store.filesystem(path)
    try:
        return fs.cat_file(target).decode("utf-8")
    except FileNotFoundError:
        return None


def write_text(path: str, text: str) -> str:
    """Write a UTF-8 text file (a local path or a URL) so that readers never see half of it.

    On S3 one PUT is atomic already; elsewhere the text goes through `write_atomically`.
    Returns the path written: the local path, or the URL as given.
    """
    fs, target = object_store.filesystem(path)
    data = text.encode("utf-8")
    if object_store.is_object_store(fs):
        fs.pipe_file(target, data)
        return path
    with write_atomically(fs, target) as sink:
        sink.write(data)
    return target if isinstance(fs, LocalFileSystem) else path
