"""`dropbox-team-log query`, run as a user runs it (a subprocess), over event strings that try
to steer the terminal: the table format shows them as escapes, one row per line; `--format csv`
and `--format json` are for programs and give back the exact strings.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest

from tests.helpers.hostile_data import HOSTILE, STEERING, hostile_dataset

#: The hostile anonymous open's fields, by its file id (SQL on a command line holds no NUL).
FIELDS = {
    "asset_path": "asset_path",
    "asset_name": "asset_name",
    "shared_link": "shared_link",
    "ip_address": "ip_address",
    "country": "country",
    "event_type": "anonymous_event_type",
}
SQL = (
    "SELECT DISTINCT asset_path, asset_name, shared_link, ip_address, country, event_type "
    "FROM unauthenticated_access WHERE asset_id = 'id:hostile0000000000000001'"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    with hostile_dataset(tmp_path_factory.mktemp("hostile") / "dataset") as path:
        yield path


def query(root, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["dropbox-team-log", "query", "--root", str(root), *args],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_table_format_shows_controls_as_escapes_one_row_per_line(root):
    result = query(root, SQL)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    steering = [c for c in STEERING if c in out.replace("\n", "")]
    assert not steering, f"raw control characters reached the terminal: {steering}"
    lines = out.splitlines()
    assert len(lines) == 3 and lines[2] == "(1 rows)", lines  # header, the row: nothing forged
    assert "\\u001b]0;pwned\\u0007\\u001b[2J" in lines[1]


def test_json_format_gives_back_the_exact_strings(root):
    result = query(root, "--format", "json", SQL)
    assert result.returncode == 0, result.stderr
    assert b"\x1b" not in result.stdout and b"\r" not in result.stdout  # JSON escapes them
    (line,) = result.stdout.decode().splitlines()
    assert json.loads(line) == {column: HOSTILE[field] for column, field in FIELDS.items()}


def test_csv_format_gives_back_the_exact_strings(root):
    result = query(root, "--format", "csv", SQL)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout.decode(), newline="")))
    assert rows == [list(FIELDS), [HOSTILE[field] for field in FIELDS.values()]]


def test_an_error_quoting_a_value_shows_it_visibly(root):
    result = query(root, SQL.replace("DISTINCT asset_path", "CAST(asset_path AS INTEGER)"))
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.startswith("error: ") and "pwned" in err, err
    assert not [c for c in STEERING if c in err.rstrip("\n")]
