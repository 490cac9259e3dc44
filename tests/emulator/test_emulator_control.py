"""Control API, wire basics (request id, content types), loopback-only binding, the CLI, and
the control API's guard: the per-run token, and no browser-style cross-origin requests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import orjson
import pytest
import requests

from dropbox_emulator import (
    CONTROL_TOKEN_ENV,
    CONTROL_TOKEN_HEADER,
    ControlRefusedError,
    EmulatorClient,
    EmulatorServer,
    check_loopback,
)
from dropbox_emulator.__main__ import main
from dropbox_emulator.process import emulator_process


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def _get(url: str, token: str) -> requests.Response:
    return _session().get(url, headers={CONTROL_TOKEN_HEADER: token}, timeout=10)


def test_health_config_and_clock(emulator):
    health = emulator.health()
    assert health["status"] == "ok" and health["now"] == "2026-03-01T12:00:00Z"
    assert health["team_id"] == emulator.config.resolved_team_id
    config = _get(f"{emulator.base_url}/__emulator/config", emulator.token).json()
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
    resp = _get(url, emulator.token)
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
    s = _session()
    token = {CONTROL_TOKEN_HEADER: emulator.token}
    responses = [
        s.get(f"{emulator.base_url}/__emulator/health", headers=token, timeout=10),
        s.post(f"{emulator.base_url}/2/team/get_info", timeout=10),
        s.post(f"{emulator.base_url}/oauth2/token", data={"grant_type": "x"}, timeout=10),
        s.get(f"{emulator.base_url}/nowhere", timeout=10),
        s.get(f"{emulator.base_url}/__emulator/nowhere", headers=token, timeout=10),
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


def test_cli_serves_and_prints_base_url_key_and_control_token():
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
        env={key: value for key, value in os.environ.items() if key != CONTROL_TOKEN_ENV},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(9)]
        assert lines[0].startswith("Dropbox API emulator listening on http://127.0.0.1:")
        base = lines[0].split()[-1]
        assert "emu-demo-app-key" in lines[1]
        assert "demo value" in lines[2]
        assert CONTROL_TOKEN_HEADER in lines[7] and CONTROL_TOKEN_ENV in lines[8]
        token = lines[8].split()[-1]
        assert len(token) >= 24
        health = _get(f"{base}/__emulator/health", token)
        assert health.json()["now"] == "2026-03-01T00:00:00Z"
        assert _session().get(f"{base}/__emulator/health", timeout=10).status_code == 403
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


# --- the control API's guard ----------------------------------------------------------------


def _control(emulator, method: str, name: str, **kwargs) -> requests.Response:
    return _session().request(
        method, f"{emulator.base_url}/__emulator/{name}", timeout=10, **kwargs
    )


FAULT = [{"kind": "server_error", "route": "2/team/*"}]


@pytest.mark.parametrize(
    "headers",
    [{}, {CONTROL_TOKEN_HEADER: "guessed"}, {CONTROL_TOKEN_HEADER: ""}],
    ids=["no-token", "wrong-token", "empty-token"],
)
def test_the_control_api_refuses_a_call_without_the_run_s_token(emulator, headers):
    for method, name, body in [
        ("GET", "health", None),
        ("GET", "truth", None),
        ("POST", "faults", orjson.dumps(FAULT)),
        ("POST", "revoke", b"{}"),
        ("POST", "events", orjson.dumps([{"timestamp": "2026-02-01T00:00:00Z"}])),
    ]:
        resp = _control(
            emulator,
            method,
            name,
            data=body,
            headers={"Content-Type": "application/json", **headers},
        )
        assert resp.status_code == 403, name
        message = resp.json()["error"]
        assert "control token" in message and CONTROL_TOKEN_HEADER in message
        assert emulator.token not in message
    assert emulator.faults()["faults"] == [] and emulator.stats()["calls"] == {}
    assert emulator.state.store.custom_version == 0


def test_the_control_api_serves_a_call_with_the_run_s_token(emulator):
    token = {CONTROL_TOKEN_HEADER: emulator.token}
    resp = _control(
        emulator,
        "POST",
        "faults",
        data=orjson.dumps(FAULT),
        headers={**token, "Content-Type": "application/json"},
    )
    assert resp.status_code == 200
    assert emulator.faults()["faults"][0]["kind"] == "server_error"
    own = {**token, "Origin": emulator.base_url, "Sec-Fetch-Site": "same-origin"}
    assert _control(emulator, "GET", "health", headers=own).status_code == 200


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        (
            {"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
            "Origin 'http://evil.example'",
        ),
        ({"Origin": "null", "Content-Type": "application/json"}, "Origin 'null'"),
        ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, "cross-site"),
        ({"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"}, "same-site"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "form-urlencoded"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, "multipart/form-data"),
        ({"Content-Type": "text/plain;charset=UTF-8"}, "text/plain"),
    ],
    ids=[
        "foreign-origin-form",
        "null-origin",
        "cross-site",
        "same-site",
        "form",
        "multipart",
        "text",
    ],
)
def test_the_control_api_refuses_browser_style_cross_origin_requests(emulator, headers, needle):
    """What a web page open while the emulator runs could send: refused even with the token
    (a page cannot know it, but the refusal must not depend on that), and nothing happens."""
    body = orjson.dumps(FAULT)
    resp = _control(
        emulator,
        "POST",
        "faults",
        data=body,
        headers={CONTROL_TOKEN_HEADER: emulator.token, **headers},
    )
    assert resp.status_code == 403
    assert needle in resp.json()["error"]
    assert emulator.faults()["faults"] == []


def test_a_cross_origin_html_form_post_revokes_nothing(emulator, team_client):
    """Exactly what `<form method=post action=http://127.0.0.1:PORT/__emulator/revoke>` on
    another site sends; the team's grant still works afterwards."""
    resp = _control(
        emulator,
        "POST",
        "revoke",
        data={"refresh_token": team_client._oauth2_refresh_token},
        headers={"Origin": "https://attacker.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert resp.status_code == 403 and "cross-origin" in resp.json()["error"]
    team_client.refresh_access_token()
    assert team_client.team_get_info().team_id == emulator.config.resolved_team_id


def test_a_client_without_the_token_gets_a_clear_error(emulator, monkeypatch):
    monkeypatch.delenv(CONTROL_TOKEN_ENV, raising=False)
    with pytest.raises(ControlRefusedError, match=CONTROL_TOKEN_HEADER):
        EmulatorClient(emulator.base_url).health()
    monkeypatch.setenv(CONTROL_TOKEN_ENV, emulator.token)
    assert EmulatorClient(emulator.base_url).health()["status"] == "ok"


def test_the_token_can_be_set_for_a_run(make_config):
    from dropbox_emulator import running_emulator

    with running_emulator(make_config(), control_token="chosen-for-this-test") as emu:
        assert emu.token == "chosen-for-this-test"
        assert EmulatorClient(emu.base_url, token="chosen-for-this-test").health()["status"] == "ok"


def test_an_emulator_process_hands_its_client_the_token(tmp_path):
    """The demo's and the bench's emulator: its own process, its client knows the token."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        (tmp_path / "emulator.log").open("w") as log,
        emulator_process(port, ["--events-per-day", "10"], log=log) as (_proc, client),
    ):
        assert client.token and client.health()["status"] == "ok"
        assert _session().get(f"{client.base_url}/__emulator/health", timeout=10).status_code == 403
