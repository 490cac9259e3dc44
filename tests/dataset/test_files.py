"""dataset.files: a file appears whole or not at all, and nothing is left beside it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

from dropbox_team_log.dataset.files import write_atomically, write_text


def test_write_text_replaces_a_local_file_whole_in_private_folders(tmp_path: Path):
    target = tmp_path / "reports" / "deep" / "report.html"
    assert write_text(str(target), "first") == str(target)
    assert write_text(str(target), "second ✓") == str(target)
    assert target.read_text(encoding="utf-8") == "second ✓"
    assert os.listdir(target.parent) == ["report.html"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o750 & ~umask
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 & ~umask


def test_an_error_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "day" / "events.parquet"
    write_text(str(target), "old")
    with (
        pytest.raises(OSError, match="disk full"),
        write_atomically(LocalFileSystem(), str(target)) as sink,
    ):
        sink.write(b"half")
        raise OSError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(target.parent) == ["events.parquet"]


def test_write_text_on_another_fsspec_store_leaves_no_temp():
    fs = fsspec.filesystem("memory")
    try:
        assert write_text("memory://reports/r.html", "text") == "memory://reports/r.html"
        assert fs.cat_file("/reports/r.html") == b"text"
        assert fs.find("/reports") == ["/reports/r.html"]
    finally:
        fs.rm("/reports", recursive=True)
