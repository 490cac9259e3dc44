"""`dropbox-team-log detect`: findings of a period, terminal-safe; `--write` raises them once.

The dataset is emulator data with crafted activity synced for real (tests/helpers/
detection_data.py); the command runs through the CLI's own entry point.
"""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stderr
from datetime import timedelta

import pytest

from dropbox_team_log.cli import detect
from dropbox_team_log.cli.main import build_parser
from tests.helpers.detection_data import T0, epoch, sync, team_emulator

HOSTILE = "Evil\x1b[2J\x07 Name"
BURST_AT = T0 - timedelta(days=2)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from dropbox_emulator.scenarios import Scenarios

    path = tmp_path_factory.mktemp("detect") / "dataset"
    with team_emulator(days=5) as emu:
        s = Scenarios(emu.config)
        emu.add_events(s.tfa_change(epoch(BURST_AT), s.member(HOSTILE), "sms", "disabled"))
        emu.add_events(s.file_burst(epoch(BURST_AT), s.member("Kai Cleaner"), "file_delete", 12))
        sync(emu, path, T0 - timedelta(days=5), T0)
    return path


def run(*argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `dropbox-team-log detect ARGV`."""
    args = build_parser().parse_args(["detect", *argv])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stderr(err):
        code = detect.detect_command(args, out)
    return code, out.getvalue(), err.getvalue()


def test_table_is_terminal_safe_and_json_exact(root):
    code, out, _ = run("--root", str(root), "--all", "--detection", "detect_tfa_disabled")
    assert code == 0 and "detect_tfa_disabled" in out and "(1 findings)" in out
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\u001b[2j\\u0007" in out  # the escape shown, not obeyed
    code, out, _ = run("--root", str(root), "--all", "--format", "json")
    rows = [json.loads(line) for line in out.splitlines()]
    (tfa,) = [r for r in rows if r["detection"] == "detect_tfa_disabled"]
    assert "evil\x1b[2j\x07" in tfa["actor"] and json.loads(tfa["evidence"])["new_value"] == (
        "disabled"
    )


def test_set_overrides_a_knob(root):
    _, out, _ = run("--root", str(root), "--all", "--format", "json")
    assert "kai.cleaner@" not in out  # 12 deletes: under the default threshold
    _, out, _ = run(
        "--root", str(root), "--all", "--format", "json", "--set", "mass_delete_files=12"
    )
    (hit,) = [json.loads(line) for line in out.splitlines() if "kai.cleaner@" in line]
    assert hit["detection"] == "detect_mass_delete" and hit["events"] == 12


def test_write_raises_each_finding_once(root, tmp_path):
    copy = tmp_path / "dataset"
    shutil.copytree(root, copy)
    code, out, err = run("--root", str(copy), "--all", "--write", "--format", "json")
    first = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and first and f"{len(first)} new finding(s) written" in err
    assert all(r["raised_at"] for r in first)
    code, out, err = run("--root", str(copy), "--all", "--write", "--format", "json")
    assert "0 new finding(s) written" in err
    assert [r["raised_at"] for r in map(json.loads, out.splitlines())] == [
        r["raised_at"] for r in first
    ]


def test_bad_knob_and_list(root):
    code, _, err = run("--root", str(root), "--set", "mass_delete_file=3")
    assert code == 2 and "unknown detection setting 'mass_delete_file'" in err
    code, out, _ = run("--root", str(root), "--list")
    assert code == 0 and "detect_new_country_sign_in" in out and "mass_delete_files = 50" in out


def test_query_sees_the_detect_views(root, capsys):
    from dropbox_team_log.cli.main import main

    sql = "SELECT detection, asset FROM detect_tfa_disabled"
    assert main(["query", "--root", str(root), "--format", "json", sql]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["detection"] == "detect_tfa_disabled" and row["asset"].startswith("evil")
