"""Keeping an OCSF copy current: the days written since the last export, exported again.

Days are synced for real from the emulator (tests/helpers/detection_data.py) at successive
times, as the incremental DAG writes them; `export_changed` is what the OCSF export DAG runs.
The copy is checked against the emulator's ground truth, duplicates counted.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from dropbox_team_log.analytics.ocsf_destination import (
    DestinationError,
    OcsfDestination,
    export_changed,
    state_path,
)
from dropbox_team_log.analytics.ocsf_export import SecurityLakeTarget
from dropbox_team_log.dataset.versions import day_file_versions
from tests.analytics.test_ocsf_export import read_hive
from tests.helpers.detection_data import T0, epoch, sync, team_emulator
from tests.helpers.pipeline import canonical, multiset

DAYS = 4
VARIABLE = "dropbox_team_log_ocsf_export"
LAKE = '"region": "eu-west-1", "account_id": "123456789012"'


def ocsf_raws(out: Path) -> list[str]:
    """The raw_data of every hive record under `out`, read with DuckDB."""
    return [row["raw_data"] for row in read_hive(out)]


def snapshot(out: Path) -> dict[str, tuple[int, bytes]]:
    """Each file under `out`: when it was last written, and its bytes."""
    return {
        str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(out.rglob("*.parquet"))
    }


def test_the_first_run_exports_every_day_then_only_the_days_written_since(tmp_path):
    from dropbox_emulator.scenarios import Scenarios

    root, out = tmp_path / "dataset", tmp_path / "ocsf"
    destination = OcsfDestination(out=str(out))
    start = T0 - timedelta(days=DAYS)
    with team_emulator(DAYS, timeline_end=T0) as emu:
        late_at = (T0 - timedelta(days=1)).replace(hour=15, minute=0, second=0)  # re-read
        s = Scenarios(emu.config)
        late = s.file_burst(epoch(late_at), s.member("Lee Late"), "file_download", 1)
        emu.add_events(late, visible_at=T0 + timedelta(hours=2))  # arrives two hours late

        sync(emu, root, start, T0)
        first = export_changed(str(root), destination)
        assert first.changed_days == sorted(day_file_versions(str(root)))  # every day
        assert multiset(ocsf_raws(out)) == multiset(emu.truth(start, T0, as_of=T0))
        assert first.records == len(ocsf_raws(out)) > 0

        before = snapshot(out)
        idle = export_changed(str(root), destination)  # nothing written since
        assert (idle.changed_days, idle.records, idle.files) == ([], 0, 0)
        assert snapshot(out) == before

        later = T0 + timedelta(hours=3)
        written = {day.isoformat() for day in sync(emu, root, start, later)}
        assert late_at.date().isoformat() in written
        third = export_changed(str(root), destination)
        assert set(third.changed_days) == written
        copy = multiset(ocsf_raws(out))
        assert copy == multiset(emu.truth(start, later, as_of=later))  # nothing twice
        assert [copy[canonical(json.dumps(event))] for event in late] == [1]  # the late event
    after = snapshot(out)
    kept = {name for name in before if name.split("event_day=")[1][:10] not in written}
    assert kept and all(after[name] == before[name] for name in kept)  # not rewritten


def test_a_failed_export_records_nothing_and_the_next_run_exports_those_days(tmp_path):
    root, out = tmp_path / "dataset", tmp_path / "ocsf"
    destination = OcsfDestination(out=str(out))
    with team_emulator(2, timeline_end=T0) as emu:
        sync(emu, root, T0 - timedelta(days=2), T0)
        truth = multiset(emu.truth(T0 - timedelta(days=2), T0, as_of=T0))
    out.write_text("a file where the export's folder goes")
    with pytest.raises(OSError):
        export_changed(str(root), destination)
    assert not os.path.exists(state_path(str(root), destination))
    out.unlink()
    again = export_changed(str(root), destination)
    assert again.changed_days == sorted(day_file_versions(str(root)))
    assert multiset(ocsf_raws(out)) == truth


def test_another_destination_starts_over(tmp_path):
    root = tmp_path / "dataset"
    with team_emulator(2, timeline_end=T0) as emu:
        sync(emu, root, T0 - timedelta(days=2), T0)
    hive = OcsfDestination(out=str(tmp_path / "a"))
    assert export_changed(str(root), hive).changed_days
    assert export_changed(str(root), hive).changed_days == []
    lake = SecurityLakeTarget("eu-west-1", "123456789012")
    for other in (
        OcsfDestination(out=str(tmp_path / "b")),
        OcsfDestination(out=str(tmp_path / "a"), hive=False, lake=lake),
    ):
        assert other.key() != hive.key()
        assert export_changed(str(root), other).changed_days == sorted(day_file_versions(str(root)))


def test_the_variable_unset_is_hive_partitions_beside_the_dataset():
    destination = OcsfDestination.from_setting(None, "/data/root/")
    assert destination == OcsfDestination(out="/data/root/_ocsf", hive=True, lake=None)
    assert OcsfDestination.from_setting("{}", "/data/root") == destination


@pytest.mark.parametrize(
    ("layout", "hive"), [("security-lake", False), ("both", True)], ids=["lake", "both"]
)
def test_the_variable_names_a_security_lake_target(layout, hive):
    text = f'{{"out": "s3://lake-bucket/", "layout": "{layout}", {LAKE}, "source_version": "1.0"}}'
    destination = OcsfDestination.from_setting(text, "/data/root")
    assert destination == OcsfDestination(
        out="s3://lake-bucket/",
        hive=hive,
        lake=SecurityLakeTarget("eu-west-1", "123456789012", source_version="1.0"),
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("s3://lake-bucket/", f"Variable {VARIABLE} is not JSON"),
        ('["s3://lake-bucket/"]', "must be a JSON object"),
        ('{"bucket": "lake"}', "unknown key(s) 'bucket': the keys are account_id, layout, out"),
        ('{"out": 3}', "out must be text"),
        ('{"layout": "lake"}', f"{VARIABLE}.layout 'lake' is not one of hive, security-lake"),
        ('{"layout": "security-lake"}', f"needs {VARIABLE}.region, an AWS region"),
        (
            '{"layout": "both", "region": "eu-west-1", "account_id": "1234"}',
            f"needs {VARIABLE}.account_id, the 12-digit AWS account id",
        ),
        (
            f'{{"layout": "both", {LAKE}, "source_version": "1 0"}}',
            f"{VARIABLE}.source_version '1 0' is not a version",
        ),
    ],
    ids=["not-json", "not-object", "unknown-key", "not-text", "layout", "region", "account", "ver"],
)
def test_a_wrong_variable_says_what_to_fix(text, says):
    with pytest.raises(DestinationError) as caught:
        OcsfDestination.from_setting(text, "/data/root")
    assert says in str(caught.value)
