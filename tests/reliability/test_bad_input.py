"""Every user-facing entry point refuses bad values with a clear message before doing anything.

Unit-level checks of params and connect arguments live in tests/sync/test_planning.py and
tests/cli/test_connect.py; here: the emulator's flags, half-filled connections and bad
params/Variables through real DAG runs (no API call made, nothing written). The output-URL case
belongs to the object-storage tests.
"""

from __future__ import annotations

import json

import pytest

from dropbox_emulator.__main__ import main as emulator_main
from dropbox_team_log.errors import ConnectionConfigError
from dropbox_team_log.hooks.dropbox_team import DropboxTeamConnection
from tests.helpers.pipeline import event_calls, fresh_dag
from tests.reliability.matrix import T0, conn_json

ANY_INTERFACE = ".".join(["0"] * 4)  # what must be refused


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "-1"], "argument --port: -1 is out of range: must be from 0 to 65535"),
        (["--port", "70000"], "argument --port: 70000 is out of range"),
        (["--port", "http"], "argument --port: 'http' is not a int"),
        (["--events-per-day", "-5"], "argument --events-per-day: -5 is out of range"),
        (["--events-per-day", "nan"], "argument --events-per-day: nan is out of range"),
        (["--host", ANY_INTERFACE], "argument --host: refusing to bind"),
        (["--host", "192.168.1.10"], "only listens on a loopback address"),
        (["--host", "example.com"], "only listens on a loopback address"),
        (["--page-size", "0"], "argument --page-size: 0 is out of range: must be from 1 to 1000"),
        (["--late-rate", "1.5"], "argument --late-rate: 1.5 is out of range"),
        (["--duplicate-rate", "-0.1"], "argument --duplicate-rate"),
        (["--max-delay", "0"], "argument --max-delay: 0 is out of range"),
        (["--cursor-ttl", "-1"], "argument --cursor-ttl"),
        (["--access-token-lifetime", "0"], "argument --access-token-lifetime"),
        (["--cache-events", "0"], "argument --cache-events: 0 is out of range"),
        (["--num-licensed-users", "0"], "argument --num-licensed-users"),
        (["--clock-rate", "-2"], "argument --clock-rate"),
        (["--clock", "yesterday"], "argument --clock: 'yesterday' is not an ISO 8601 time"),
        (
            ["--timeline-start", "2026-02-01", "--timeline-end", "2026-01-01"],
            "timeline_end is before timeline_start",
        ),
        (["--app-secret", ""], "app_key and app_secret must not be empty"),
        (["--scopes", " "], "app_scopes must name at least one scope"),
    ],
)
def test_emulator_flags(argv, message, capsys):
    """Refused with exit code 2 before binding a port (the call returns instead of serving)."""
    assert emulator_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "listening on" not in err


class _Conn:
    """The fields of an Airflow connection, as the hook reads them."""

    def __init__(self, **fields):
        self.conn_id = "bad_conn"
        self.login = fields.get("login", "app-key")
        self.password = fields.get("password", "app-secret")
        self.host = fields.get("host")
        self.port = fields.get("port")
        self.schema = fields.get("schema")
        self.extra_dejson = fields.get("extra", {"refresh_token": "r" * 30})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"login": None}, "has no login (the Dropbox app key)"),
        ({"login": ""}, "has no login (the Dropbox app key)"),
        ({"extra": {}}, "has no extra.refresh_token"),
        ({"extra": {"refresh_token": ""}}, "has no extra.refresh_token"),
        ({"extra": {"refresh_token": 12345}}, "has no extra.refresh_token"),
        ({"host": "http://example.com"}, "plain http on a non-loopback host"),
        ({"host": "http://10.0.0.5:8765"}, "plain http on a non-loopback host"),
        ({"host": "ftp://127.0.0.1"}, "is not an http(s) URL"),
        (
            {"extra": {"refresh_token": "r" * 30, "connected_at": "last tuesday"}},
            "extra.connected_at='last tuesday' is not an ISO-8601 time",
        ),
        (
            {"extra": {"refresh_token": "r" * 30, "timeout": 0}},
            "extra.timeout=0 must be a positive",
        ),
        ({"extra": {"refresh_token": "r" * 30, "timeout": "soon"}}, "extra.timeout='soon'"),
        ({"extra": {"refresh_token": "r" * 30, "timeout": True}}, "extra.timeout=True"),
        ({"extra": {"refresh_token": "r" * 30, "backoff_base": -1}}, "extra.backoff_base=-1"),
    ],
)
def test_half_filled_connections_say_what_to_fix(fields, message):
    with pytest.raises(ConnectionConfigError) as exc:
        DropboxTeamConnection.from_airflow(_Conn(**fields))
    assert message in str(exc.value)
    assert "r" * 30 not in str(exc.value) and "app-secret" not in str(exc.value)


def _run_fails_before_any_call(emu, dag_id, conf, message, output, capfd):
    from airflow.sdk.exceptions import ParamValidationError

    emu.set_clock(T0)
    calls = event_calls(emu)
    try:
        run = fresh_dag(dag_id).test(logical_date=T0, run_conf=conf)
    except ParamValidationError as exc:  # Airflow's own check of the params' JSON schema
        assert message in str(exc)
    else:
        assert run.state == "failed"
        seen = capfd.readouterr()
        assert message in seen.out + seen.err
    assert event_calls(emu) == calls, "an API call was made"
    assert not output.exists(), "something was written"


@pytest.mark.parametrize(
    ("dag_id", "conf", "message"),
    [
        ("dropbox_team_log_backfill", {"days": 400}, "days"),
        ("dropbox_team_log_backfill", {"start": "2026-11-01"}, "give both start and end"),
        ("dropbox_team_log_backfill", {"start": "2026-11-01", "end": "2026-13-01"}, "not a date"),
        (
            "dropbox_team_log_backfill",
            {"start": "2026-11-01T00:00:00.5Z", "end": "2026-11-02"},
            "does not match",  # refused by the trigger form's pattern (the plan says more)
        ),
        (
            "dropbox_team_log_backfill",
            {"start": "2024-01-01", "end": "2026-11-02"},
            "more than 365 days",
        ),
        ("dropbox_team_log_incremental", {"settle_hours": 5}, "settle_hours"),
        ("dropbox_team_log_incremental", {"refresh_hours": -1}, "refresh_hours"),
        ("dropbox_team_log_incremental", {"catchup_days": 0}, "catchup_days"),
    ],
)
def test_bad_params_through_real_runs(emu, connected, output, capfd, dag_id, conf, message):
    _run_fails_before_any_call(emu, dag_id, conf, message, output, capfd)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"AIRFLOW_VAR_DROPBOX_TEAM_LOG_CONN_ID": "nobody_saved_this"}, "does not exist"),
        ({"half": {"login": ""}}, "has no login"),
        ({"half": {"host": "http://192.0.2.7:8765"}}, "plain http on a non-loopback host"),
        ({"half": {"extra": {"connected_at": None}}}, "has no extra.refresh_token"),
    ],
)
def test_bad_connection_or_variable_through_real_runs(
    emu, connected, output, capfd, monkeypatch, setup, message
):
    if "half" in setup:
        value = json.loads(conn_json(emu))
        for key, change in setup["half"].items():
            value[key] = change
        monkeypatch.setenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", json.dumps(value))
    else:
        for name, value in setup.items():
            monkeypatch.setenv(name, value)
    _run_fails_before_any_call(
        emu, "dropbox_team_log_backfill", {"days": 2}, message, output, capfd
    )
