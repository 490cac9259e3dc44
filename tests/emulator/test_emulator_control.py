"""Control API, wire basics (request id, content types), loopback-only binding, the CLI."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import orjson
import pytest
import requests

from dropbox_emulator import EmulatorServer, check_loopback
from dropbox_emulator.__main__ import main


def _get(url: str) -> requests.Response:
    s = requests.Session()
    s.trust_env = False
    return s.get(url, timeout=10)


def test_health_config_and_clock(emulator):
    health = emulator.health()
    assert health["status"] == "ok" and health["now"] == "2026-03-01T12:00:00Z"
    assert health["team_id"] == emulator.config.resolved_team_id
    config = _get(f"{emulator.base_url}/__emulator/config").json()
    assert "app_secret" not in config and config["app_secret_is_demo_default"] is True
    assert config["timeline_start"] == "2025-12-01T12:00:00Z"
    assert config["timeline_end"] == "2026-03-08T12:00:00Z"
    assert emulator.advance(90) == "2026-03-01T12:01:30Z"
    assert emulator.set_clock("2026-03-02T00:00:00+00:00") == "2026-03-02T00:00:00Z"
    assert emulator.now() == "2026-03-02T00:00:00Z"


def test_truth_counts_and_as_of(emulator):
    url = (
        f"{emulator.base_url}/__emulator/truth?start=2026-02-27T00:00:00Z&end=2026-03-02T00:00:00Z"
    )
    resp = _get(url)
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    lines = resp.content.splitlines()
    assert int(resp.headers["X-Event-Count"]) == len(lines) > 0
    assert all(orjson.loads(line)["timestamp"] < "2026-03-01T12:00:01" for line in lines)
    later = emulator.truth(
        "2026-02-27T00:00:00Z", "2026-03-02T00:00:00Z", as_of="2026-03-02T12:00:00Z"
    )
    assert len(later) > len(lines)  # late events and the rest of the day
    earlier = emulator.truth(
        "2026-02-27T00:00:00Z", "2026-03-02T00:00:00Z", as_of="2026-02-28T00:00:00Z"
    )
    assert len(earlier) < len(lines)


def test_every_response_has_a_request_id_and_exact_json_type(emulator):
    s = requests.Session()
    s.trust_env = False
    responses = [
        s.get(f"{emulator.base_url}/__emulator/health", timeout=10),
        s.post(f"{emulator.base_url}/2/team/get_info", timeout=10),
        s.post(f"{emulator.base_url}/oauth2/token", data={"grant_type": "x"}, timeout=10),
        s.get(f"{emulator.base_url}/nowhere", timeout=10),
        s.get(f"{emulator.base_url}/__emulator/nowhere", timeout=10),
    ]
    for resp in responses:
        assert len(resp.headers["X-Dropbox-Request-Id"]) == 32
    assert responses[0].headers["Content-Type"] == "application/json"
    assert responses[2].headers["Content-Type"] == "application/json"
    assert [r.status_code for r in responses] == [200, 400, 400, 404, 404]


def test_stats_count_calls_per_route(emulator, team_client):
    team_client.team_get_info()
    team_client.team_get_info()
    stats = emulator.stats()
    assert stats["calls"]["2/team/get_info"] == 2
    assert stats["responses"]["2/team/get_info 200"] == 2
    assert "__emulator/stats" not in str(stats["calls"])  # control calls are not counted
    emulator.reset_stats()
    assert emulator.stats()["calls"] == {}


def test_add_events_validation(emulator):
    with pytest.raises(RuntimeError, match="400"):
        emulator.add_events([{"no": "timestamp"}])
    with pytest.raises(RuntimeError, match="400"):
        emulator.add_events(
            [{"timestamp": "2026-02-01T00:00:00Z"}], visible_at="2026-01-01T00:00:00Z"
        )
    assert emulator.add_events([{"timestamp": "2026-02-01T00:00:00Z"}]) == 1


ALL_INTERFACES = ".".join(["0"] * 4)  # what must be refused


@pytest.mark.parametrize("host", [ALL_INTERFACES, "192.168.1.10", "example.com", "", "::"])
def test_refuses_non_loopback_addresses(host):
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(host)
    with pytest.raises(ValueError, match="refusing to bind"):
        EmulatorServer(host=host)


def test_loopback_variants_are_accepted():
    assert check_loopback("localhost") == "127.0.0.1"
    assert check_loopback("127.0.0.2") == "127.0.0.2"
    assert check_loopback("::1") == "::1"


def test_cli_refuses_public_bind(capsys):
    assert main(["--host", ALL_INTERFACES, "--port", "0"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_cli_serves_and_prints_base_url_and_key():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dropbox_emulator",
            "--port",
            "0",
            "--seed",
            "4",
            "--events-per-day",
            "50",
            "--clock",
            "2026-03-01T00:00:00Z",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("Dropbox API emulator listening on http://127.0.0.1:")
        base = lines[0].split()[-1]
        assert "emu-demo-app-key" in lines[1]
        assert "demo value" in lines[2]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{base}/__emulator/health", timeout=10) as resp:
            assert orjson.loads(resp.read())["now"] == "2026-03-01T00:00:00Z"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_hides_a_real_secret():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dropbox_emulator",
            "--port",
            "0",
            "--app-secret",
            "very-private-value",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        head = "".join(proc.stdout.readline() for _ in range(7))
        assert "very-private-value" not in head and "not shown" in head
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert "very-private-value" not in out + err


def test_truth_count_matches_truth(emulator):
    span = ("2026-02-01T00:00:00Z", "2026-02-10T00:00:00Z")
    assert emulator.truth_count(*span) == len(emulator.truth(*span)) > 0
    assert emulator.truth_count() == len(emulator.truth())
