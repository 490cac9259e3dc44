"""dataset.team_info: each team's card beside the data, written only on a change, outside the
readers' glob, a broken one skipped and replaced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropbox_team_log.dataset.layout import TeamKeyError
from dropbox_team_log.dataset.team_info import TeamInfo, TeamInfoStore
from tests.helpers.dataset import read_dataset

ACME = TeamInfo("acme", "dbtid:acme", "Acme <b>Corp</b>", "acme")


def test_a_card_is_written_once_and_read_back(tmp_path: Path):
    store = TeamInfoStore(str(tmp_path))
    assert store.read("acme") is None and store.load_all() == []
    assert store.save(ACME) is True
    card = tmp_path / "_teams" / "acme.json"
    stamp = os.stat(card).st_mtime_ns
    assert store.save(ACME) is False and os.stat(card).st_mtime_ns == stamp  # no change: no write
    renamed = TeamInfo("acme", "dbtid:acme", "Acme Ltd", "acme")
    assert store.save(renamed) is True and store.read("acme") == renamed
    default = TeamInfo("dropbox_team_default", "dbtid:d", None, None)
    store.save(default)
    assert store.load_all() == [renamed, default]
    assert read_dataset(str(tmp_path)).num_rows == 0  # outside the readers' glob


def test_a_broken_card_is_skipped_then_replaced(tmp_path: Path, caplog):
    store = TeamInfoStore(str(tmp_path))
    (tmp_path / "_teams").mkdir()
    (tmp_path / "_teams" / "acme.json").write_text("{not json")
    (tmp_path / "_teams" / "other.json").write_text('["a list"]')
    assert store.load_all() == []
    assert "skipped" in caplog.text
    assert store.save(ACME) is True and store.load_all() == [ACME]


def test_a_conn_id_that_cannot_name_a_file_is_refused(tmp_path: Path):
    with pytest.raises(TeamKeyError):
        TeamInfoStore(str(tmp_path)).save(TeamInfo("../x", None, None, None))
    assert not (tmp_path / "_teams").exists()
