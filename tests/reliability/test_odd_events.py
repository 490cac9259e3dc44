"""Events the generator never makes, injected through the emulator's POST /__emulator/events:
MBs of details, unicode and control characters in names and paths, IPv6 origins, event types
and categories no SDK knows. They must land exactly (raw_event byte-for-byte as JSON) and keep
their columns readable; `query` shows their control characters as escapes, never raw.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow.compute as pc
import pyarrow.dataset as ds

from dropbox_team_log.cli import main as cli
from dropbox_team_log.display import visible
from tests.helpers.pipeline import event_calls, run_dag
from tests.reliability.matrix import T0, FaultFigures, compare, record

DAY_LO = T0 - timedelta(days=2)
ODD_NAME = 'Zoë \u202eevil\u202c 名前 😀 tab\there nl\nhere nul\x00 bell\x07 \\ "quoted"'
ODD_PATH = "/Ünïcödé/dir\r\nwith/CRLF/\x1b[31mred\x1b[0m/файл 📁.txt"


def _odd_events(template: dict) -> list[dict]:
    def at(hours: int) -> str:
        return (DAY_LO + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")

    big = json.loads(json.dumps(template))
    big["timestamp"] = at(1)
    big["details"] = {".tag": "file_download_details", "pad": "é" * (2 * 1024 * 1024)}
    names = json.loads(json.dumps(template))
    names["timestamp"] = at(2)
    names["actor"] = {
        ".tag": "user",
        "user": {".tag": "team_member", "display_name": ODD_NAME, "email": "zoë@例え.jp"},
    }
    names["assets"] = [{".tag": "file", "display_name": ODD_NAME, "path": {"contextual": ODD_PATH}}]
    ipv6 = json.loads(json.dumps(template))
    ipv6["timestamp"] = at(3)
    ipv6["origin"] = {
        "geo_location": {"ip_address": "2001:db8::ff00:42:8329", "country": "DE"},
        "access_method": {".tag": "end_user", "end_user": {".tag": "web", "session_id": "x"}},
    }
    unknown = json.loads(json.dumps(template))
    unknown["timestamp"] = at(4)
    unknown["event_type"] = {".tag": "quantum_teleport_file", "description": "(future) new"}
    unknown["event_category"] = {".tag": "quantum"}
    unknown["details"] = {".tag": "quantum_teleport_file_details", "qubits": [1, 2, 3]}
    return [big, names, ipv6, unknown]


def test_odd_events_land_exactly(emu, connected, output, capsys):
    template = json.loads(emu.truth(DAY_LO, T0, as_of=T0)[0])
    odd = _odd_events(template)
    emu.add_events(odd, visible_at=DAY_LO + timedelta(hours=5))
    calls0 = event_calls(emu)
    run_dag(emu, "dropbox_team_log_backfill", T0, {"days": 2})
    expected, lost, duplicated = compare(output, emu, DAY_LO, T0, as_of=T0)
    record(
        FaultFigures(
            "odd events: 2 MB details, unicode/control chars, IPv6, unknown type",
            len(odd),
            event_calls(emu) - calls0,
            event_calls(emu) - calls0,
            expected,
            lost,
            duplicated,
        )
    )
    assert (lost, duplicated) == (0, 0)
    table = ds.dataset(str(output), format="parquet", partitioning="hive").to_table()
    rows = {t: i for i, t in enumerate(table.column("event_type").to_pylist())}
    assert "quantum_teleport_file" in rows
    unknown = table.slice(rows["quantum_teleport_file"], 1).to_pylist()[0]
    assert unknown["event_category"] == "quantum"
    hit = table.filter(pc.equal(table.column("ip_address"), "2001:db8::ff00:42:8329"))
    assert hit.num_rows == 1 and hit.column("country").to_pylist() == ["DE"]
    named = table.filter(pc.equal(table.column("actor_display_name"), ODD_NAME))
    assert named.num_rows == 1
    assert named.column("actor_email").to_pylist() == ["zoë@例え.jp"]
    assert ODD_PATH in json.loads(named.column("assets")[0].as_py())[0]["path"]["contextual"]
    big = [r for r in table.column("raw_event").to_pylist() if len(r) > 1_000_000]
    assert len(big) == 1 and json.loads(big[0])["details"]["pad"] == "é" * (2 * 1024 * 1024)

    capsys.readouterr()
    sql = "SELECT actor_display_name, asset_path FROM events WHERE actor_email = 'zoë@例え.jp'"
    assert cli.main(["query", "--root", str(output), sql]) == 0
    shown = capsys.readouterr().out
    assert not [c for c in "\x00\x07\x1b\r\t\u202e\u202c" if c in shown], "raw controls shown"
    assert len(shown.splitlines()) == 3  # header, the one row, the count: CR/LF forged nothing
    assert visible(ODD_NAME)[:90] in shown and visible(ODD_PATH)[:90] in shown
