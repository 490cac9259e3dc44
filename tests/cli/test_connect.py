"""`dropbox-team-log connect`: link -> Allow (over HTTP, on the emulator) -> code -> saved,
tested connection; plus every bad input it must refuse. Real HTTP, real metadata DB."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, quote_plus

import pytest
import requests

from dropbox_team_log.cli import connect_options, connection_store
from dropbox_team_log.cli import main as cli
from dropbox_team_log.errors import MissingScopeError
from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
from dropbox_team_log.settings import TEAMS_VARIABLE
from tests.helpers.connecting import (
    APP_SECRET,
    CONNECTED_AT_RE,
    CONTRACT_EXTRA,
    closed_port,
    db_row,
    delete_row,
    delete_variable,
    emulator_config,
    forget_connected,
    fresh_code,
    run_cli,
)
from tests.helpers.local_servers import LocalServer, Received, Reply

LINK_RE = re.compile(r"^\s+(http\S+/oauth2/authorize\?\S+)$", re.MULTILINE)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def connect_argv(emu, conn_id: str, *extra: str) -> list[str]:
    """`dropbox-team-log connect` against the emulator with the test app's secret."""
    return [
        "connect",
        *("--app-key", emu.config.app_key, "--app-secret", APP_SECRET),
        *("--api-base-url", emu.base_url, "--conn-id", conn_id),
        *extra,
    ]


@pytest.fixture
def emu():
    from dropbox_emulator import running_emulator

    with running_emulator(emulator_config()) as handle:
        yield handle


@pytest.fixture
def conn_id(request, airflow_db):
    """A connection id private to the test; its DB row is removed afterwards."""
    cid = "t_" + re.sub(r"\W", "_", request.node.name)[:60]
    delete_variable(TEAMS_VARIABLE)  # each test starts without a teams registry ...
    yield cid
    forget_connected(cid)  # ... and leaves none for the DAG tests that follow


@pytest.fixture(autouse=True)
def _logs(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="dropbox")  # the SDK's request lines, checked too


def interactive(monkeypatch, transcript, emu, *, scope: str | None = None) -> list[str]:
    """A terminal session: stdin is a TTY, the 'admin' opens the printed link and pastes
    the code. Returns the links that were printed."""
    links: list[str] = []
    monkeypatch.setattr(sys, "stdin", FakeTTY())

    def admin_pastes_code(prompt: str = "") -> str:
        out, _ = transcript.take()
        match = LINK_RE.search(out)
        assert match, f"no authorization link printed:\n{out}"
        link = match.group(1)
        links.append(link)
        if scope is not None:  # the admin approves a narrower grant than asked
            link = re.sub(r"scope=[^&]+", f"scope={scope}", link)
        return emu.approve(link)  # the browser: GET the consent page, POST Allow

    monkeypatch.setattr("builtins.input", admin_pastes_code)
    return links


@pytest.fixture
def default_conn(airflow_db, monkeypatch):
    """The default id, exactly as an admin uses it: no env override, the DB row removed after."""
    monkeypatch.delenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", raising=False)
    delete_row("dropbox_team_default")
    delete_variable(TEAMS_VARIABLE)
    yield "dropbox_team_default"
    forget_connected("dropbox_team_default")


def test_connect_end_to_end(emu, default_conn, monkeypatch, transcript, spy, caplog):
    conn_id = default_conn
    pool_before = pool_slots("dropbox_api")
    links = interactive(monkeypatch, transcript, emu)
    monkeypatch.setenv("DROPBOX_APP_SECRET", APP_SECRET)
    # No --conn-id: the default connection the DAGs use.
    rc = cli.main(["connect", "--app-key", emu.config.app_key, "--api-base-url", emu.base_url])
    out, err = transcript.take()
    assert rc == 0, err

    # The link points at the override's authorize page and asks for exactly our grant.
    (link,) = links
    assert link.startswith(f"{emu.base_url}/oauth2/authorize?")
    assert "token_access_type=offline" in link
    assert "scope=events.read+team_info.read" in link
    assert "code_challenge" not in link  # the secret flow

    row = db_row(conn_id)
    extra = json.loads(row.extra)
    assert row.conn_type == "dropbox_team"
    assert row.login == emu.config.app_key
    assert row.password == APP_SECRET
    assert row.host == emu.base_url
    assert row.port == 0 and not row.schema  # what Airflow 3.3.2's Test button sends back
    assert set(extra) == CONTRACT_EXTRA
    assert extra["team_id"] == emu.config.resolved_team_id
    assert extra["team_name"] == emu.config.team_name
    assert CONNECTED_AT_RE.match(extra["connected_at"])
    connected = datetime.fromisoformat(extra["connected_at"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - connected) < timedelta(minutes=2)
    assert extra["refresh_token"] in spy.tokens

    assert f"Connected Dropbox team '{emu.config.team_name}'" in out
    assert f"{emu.config.num_licensed_users} licensed users" in out
    assert f"Created Airflow connection '{conn_id}'" in out
    assert "airflow dags trigger dropbox_team_log_backfill" in out
    # The pool the sync tasks wait for exists (created here, or kept as the admin sized it).
    assert pool_slots("dropbox_api") in (4, pool_before or 4)
    assert ("Created the Airflow pool 'dropbox_api'" in out) == (pool_before is None)

    # Airflow's own test (what the UI's Test button runs) passes on the saved connection ...
    proc = run_cli("airflow", "connections", "test", conn_id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Connection success!" in proc.stdout
    transcript.add(proc.stdout, proc.stderr)

    # ... and so does the hook, reading the metadata DB like Airflow's server processes do.
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")
    ok, message = DropboxTeamHook().test_connection()
    assert ok, message
    assert emu.config.team_name in message
    transcript.add(message)

    # The stand-alone command reads it too (no AIRFLOW__CORE__TEST_CONNECTION needed).
    assert cli.main(["test-connection"]) == 0
    assert "OK: Connected to Dropbox team" in transcript.take()[0]

    transcript.assert_clean([APP_SECRET, *spy.tokens], caplog.text)
    assert spy.tokens  # the check above did look for real tokens ...
    assert "Refreshing access token" in caplog.text  # ... in the SDK's log lines too


def pool_slots(name: str) -> int | None:
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        pool = session.query(Pool).filter(Pool.pool == name).one_or_none()
        return None if pool is None else pool.slots


def test_connect_creates_the_missing_pool_and_keeps_an_existing_one(emu, conn_id, transcript):
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Pool).filter(Pool.pool == "dropbox_api").delete()
    assert cli.main(connect_argv(emu, conn_id, f"--code={fresh_code(emu)}")) == 0
    assert pool_slots("dropbox_api") == 4
    assert "Created the Airflow pool 'dropbox_api' (4 slots" in transcript.take()[0]
    with create_session() as session:
        session.query(Pool).filter(Pool.pool == "dropbox_api").update({"slots": 9})
    assert cli.main(connect_argv(emu, conn_id, f"--code={fresh_code(emu)}")) == 0  # reconnect
    assert pool_slots("dropbox_api") == 9
    assert "Created the Airflow pool" not in transcript.take()[0]


def test_connect_registers_the_team_and_says_when_its_backfill_starts(
    emu, conn_id, monkeypatch, transcript
):
    monkeypatch.delenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_TEAMS", raising=False)
    assert cli.main(connect_argv(emu, conn_id, f"--code={fresh_code(emu)}")) == 0
    out, _ = transcript.take()
    seen, stored = connection_store.load_variable(TEAMS_VARIABLE)
    assert seen == stored
    (entry,) = json.loads(stored)
    assert entry["conn_id"] == conn_id and entry["paused"] is False
    assert "backfill_triggered_at" not in entry  # the scheduled DAG starts it
    # The plan's copy of connected_at, so planning many teams reads no connection.
    assert entry["connected_at"] == json.loads(db_row(conn_id).extra)["connected_at"]
    assert f"Registered team '{conn_id}' in the Variable {TEAMS_VARIABLE}" in out
    assert "starts on the next scheduled run of dropbox_team_log_incremental" in out
    assert "(within one schedule interval)" in out
    trigger = (
        f'airflow dags trigger dropbox_team_log_backfill --conf \'{{"conn_id": "{conn_id}"}}\''
    )
    assert trigger in out

    # Reconnecting (a new grant) keeps the one entry and says so.
    assert cli.main(connect_argv(emu, conn_id, f"--code={fresh_code(emu)}")) == 0
    out, _ = transcript.take()
    assert json.loads(connection_store.load_variable(TEAMS_VARIABLE)[1]) == [entry]
    assert f"Team '{conn_id}' was registered already" in out

    # --no-save registers nothing.
    other = f"{conn_id}_b"
    argv = connect_argv(emu, other, f"--code={fresh_code(emu)}", "--no-save")
    assert cli.main(argv) == 0
    assert json.loads(connection_store.load_variable(TEAMS_VARIABLE)[1]) == [entry]


def test_connect_saves_the_connection_even_where_it_cannot_register(
    emu, conn_id, monkeypatch, transcript
):
    """The registry lives in another secrets backend: the connection is saved, and the output
    says the team is not registered and where to add it."""
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_TEAMS", '["someone_else"]')
    assert cli.main(connect_argv(emu, conn_id, f"--code={fresh_code(emu)}")) == 0
    out, _ = transcript.take()
    assert db_row(conn_id) is not None
    assert f"WARNING: team '{conn_id}' is not registered" in out
    assert "set outside the metadata DB" in out and "edit it there" in out
    assert connection_store.load_variable(TEAMS_VARIABLE)[1] is None


def test_connect_with_pkce(emu, conn_id, monkeypatch, transcript, spy, caplog):
    links = interactive(monkeypatch, transcript, emu)
    monkeypatch.delenv("DROPBOX_APP_SECRET", raising=False)
    rc = cli.main(
        [
            "connect",
            "--app-key",
            emu.config.app_key,
            "--pkce",
            "--api-base-url",
            emu.base_url,
            "--conn-id",
            conn_id,
        ]
    )
    assert rc == 0, transcript.take()[1]
    assert "code_challenge_method=S256" in links[0]
    row = db_row(conn_id)
    assert not row.password  # a public client stores no secret
    assert set(json.loads(row.extra)) == CONTRACT_EXTRA
    # The refresh without a secret works in the hook as well (PKCE grant).
    ok, message = connection_store.verify_saved(conn_id)
    assert ok, message
    transcript.assert_clean([APP_SECRET, *spy.tokens], caplog.text)


def test_reconnect_updates_in_place_and_keeps_connected_at(emu, conn_id, transcript, spy):
    base = [
        "connect",
        "--app-key",
        emu.config.app_key,
        "--api-base-url",
        emu.base_url,
        "--conn-id",
        conn_id,
        "--app-secret",
        APP_SECRET,
    ]
    assert cli.main([*base, f"--code={fresh_code(emu)}"]) == 0
    first = db_row(conn_id)
    first_extra = json.loads(first.extra)

    # Pretend the first connect was long ago and the admin set a timeout by hand.
    old = "2026-01-02T03:04:05Z"
    model = connection_store._orm_connection()
    with connection_store._db_session() as session:
        row = session.get(model, first.id)
        row.set_extra(json.dumps({**first_extra, "connected_at": old, "timeout": 30}))

    assert cli.main([*base, f"--code={fresh_code(emu)}"]) == 0
    out, _ = transcript.take()
    second = db_row(conn_id)
    extra = json.loads(second.extra)
    assert second.id == first.id  # updated, not replaced
    assert extra["connected_at"] == old  # same team: the backfill/incremental hand-off stays
    assert extra["timeout"] == 30  # keys the command does not own survive
    assert extra["refresh_token"] != first_extra["refresh_token"]  # the new grant
    assert f"Updated Airflow connection '{conn_id}'" in out
    assert f"Kept the original connected_at {old}" in out

    assert cli.main([*base, f"--code={fresh_code(emu)}", "--reset-connected-at"]) == 0
    reset = json.loads(db_row(conn_id).extra)["connected_at"]
    assert reset != old and CONNECTED_AT_RE.match(reset)

    # Another team behind the same connection id: connected_at starts anew as well.
    model = connection_store._orm_connection()
    with connection_store._db_session() as session:
        row = session.get(model, first.id)
        row.set_extra(json.dumps({**extra, "team_id": "dbtid:another-team", "connected_at": old}))
    assert cli.main([*base, f"--code={fresh_code(emu)}"]) == 0
    assert json.loads(db_row(conn_id).extra)["connected_at"] != old
    assert db_row(conn_id).id == first.id
    transcript.assert_clean([APP_SECRET, *spy.tokens])


def test_console_script_without_a_terminal(emu, conn_id, transcript):
    """The real `dropbox-team-log` executable, no TTY: link + exit 2, then --code -> saved."""
    env = {"DROPBOX_APP_SECRET": APP_SECRET}
    args = [
        "dropbox-team-log",
        "connect",
        "--app-key",
        emu.config.app_key,
        "--api-base-url",
        emu.base_url,
        "--conn-id",
        conn_id,
    ]
    first = run_cli(*args, env=env)
    transcript.add(first.stdout, first.stderr)
    assert first.returncode == 2
    assert "stdin is not a terminal" in first.stderr
    link = LINK_RE.search(first.stdout).group(1)
    assert db_row(conn_id) is None

    second = run_cli(*args, f"--code={emu.approve(link)}", env=env)
    transcript.add(second.stdout, second.stderr)
    assert second.returncode == 0, second.stderr
    assert f"Created Airflow connection '{conn_id}'" in second.stdout
    row = db_row(conn_id)
    assert set(json.loads(row.extra)) == CONTRACT_EXTRA
    transcript.assert_clean([APP_SECRET, json.loads(row.extra)["refresh_token"]])


def test_missing_scope_fails_and_saves_nothing(emu, conn_id, monkeypatch, transcript, spy):
    interactive(monkeypatch, transcript, emu, scope="team_info.read")
    rc = cli.main(connect_argv(emu, conn_id))
    _, err = transcript.take()
    assert rc == 1
    assert str(MissingScopeError(conn_id, "events.read")) in err
    assert "nothing saved" in err
    assert db_row(conn_id) is None
    transcript.assert_clean([APP_SECRET, *spy.tokens])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("bad_code", "Dropbox rejected the authorization code (invalid_grant"),
        ("bad_secret", "Dropbox rejected the app key / app secret (invalid_client)"),
        ("bad_key", "Dropbox rejected the app key / app secret (invalid_client)"),
        ("unreachable", "Dropbox OAuth token endpoint unreachable at http://127.0.0.1:"),
    ],
)
def test_code_exchange_failures(emu, conn_id, transcript, change, expected):
    code = fresh_code(emu)
    args = {
        "--app-key": emu.config.app_key,
        "--app-secret": APP_SECRET,
        "--api-base-url": emu.base_url,
        "--code": code,
    }
    if change == "bad_code":
        args["--code"] = "not-a-real-code"
    elif change == "bad_secret":
        args["--app-secret"] = "wrong-secret-123456"
    elif change == "bad_key":
        args["--app-key"] = "wrong-app-key"
    else:
        args["--api-base-url"] = f"http://127.0.0.1:{closed_port()}"
    # `--opt=value`: a code may start with "-" (argparse would take it for an option)
    argv = ["connect", "--conn-id", conn_id, *[f"{k}={v}" for k, v in args.items()]]
    assert cli.main(argv) == 1
    _, err = transcript.take()
    assert expected in err
    assert db_row(conn_id) is None
    transcript.assert_clean([APP_SECRET, "wrong-secret-123456", code])


@pytest.fixture
def no_network(monkeypatch):
    """Any HTTP request fails the test: bad input must be refused before the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network call was made")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--app-key", "k", "--app-secret", "s", "--api-base-url", "http://example.com:8765"],
            "plain http on a non-loopback host",
        ),
        (
            ["--app-key", "k", "--app-secret", "s", "--api-base-url", "http://10.0.0.5"],
            "plain http on a non-loopback host",
        ),
        (
            ["--app-key", "k", "--app-secret", "s", "--api-base-url", "ftp://127.0.0.1"],
            "is not an http(s) URL",
        ),
        (
            ["--app-key", "k", "--app-secret", "s", "--api-base-url", "http://u:pw@127.0.0.1:1"],
            "carries credentials (user:password@)",
        ),
        (
            ["--app-key", "k", "--app-secret", "s", "--api-base-url", "http://127.0.0.1\\@x.io"],
            "contains a backslash",
        ),
        (["--app-key", "  ", "--app-secret", "s"], "--app-key is empty"),
        (["--app-key", "k", "--app-secret", "s", "--pkce"], "exclude each other"),
        (["--app-key", "k", "--app-secret", " "], "the app secret is empty"),
        (["--app-key", "k"], "no app secret: set $DROPBOX_APP_SECRET"),
        (
            ["--app-key", "k", "--app-secret", "s", "--conn-id", "bad id!"],
            "not a valid connection id",
        ),
        (["--app-key", "k", "--app-secret", "s", "--code", " "], "--code is empty"),
    ],
)
def test_bad_arguments_exit_2_before_any_network_call(
    argv, message, monkeypatch, transcript, no_network
):
    monkeypatch.delenv("DROPBOX_APP_SECRET", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a terminal: nothing to prompt
    assert cli.main(["connect", *argv]) == 2
    _, err = transcript.take()
    assert message in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["connect"])
    assert exc.value.code == 2
    assert "--app-key" in capsys.readouterr().err


def test_secret_prompt_on_a_terminal(emu, monkeypatch, transcript):
    """No --app-secret and no env: asked for with hidden input, never echoed."""
    monkeypatch.delenv("DROPBOX_APP_SECRET", raising=False)
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": prompts.append(prompt) or APP_SECRET)
    monkeypatch.setattr(sys, "stdin", FakeTTY())
    args = cli.build_parser().parse_args(["connect", "--app-key", "k"])
    opts = connect_options.options_from_args(args)
    assert opts.app_secret == APP_SECRET and prompts
    assert APP_SECRET not in repr(opts)


def test_no_save_tests_but_writes_nothing(emu, conn_id, transcript):
    rc = cli.main(connect_argv(emu, conn_id, "--no-save", f"--code={fresh_code(emu)}"))
    out, _ = transcript.take()
    assert rc == 0
    assert "not saved" in out
    assert db_row(conn_id) is None


def test_refuses_to_overwrite_another_connection_type(emu, conn_id, transcript):
    model = connection_store._orm_connection()
    with connection_store._db_session() as session:
        session.add(model(conn_id=conn_id, conn_type="http", host="example.com"))
    rc = cli.main(connect_argv(emu, conn_id, "--code", "unused"))
    assert rc == 1
    assert "exists with type 'http'" in transcript.take()[1]
    assert db_row(conn_id).conn_type == "http"
    assert emu.stats()["calls"].get("oauth2/token", 0) == 0  # refused before the network


# --- the token exchange against a host that redirects or echoes the request --------------------

ODD_SECRET = "odd-s3cret/with+chars=&0f9d"
ODD_CODE = "code-Of/The+Admin=0123456789"


def connect_to(base_url: str) -> list[str]:
    return [
        "connect",
        *("--app-key", "local-app-key", "--app-secret", ODD_SECRET),
        *("--api-base-url", base_url, f"--code={ODD_CODE}", "--no-save"),
    ]


def test_a_redirected_code_exchange_sends_nothing_elsewhere(transcript, caplog):
    with LocalServer() as elsewhere:
        moved = Reply(307, "", {"Location": f"{elsewhere.base_url}/oauth2/token"})
        with LocalServer(lambda request: moved) as origin:
            assert cli.main(connect_to(origin.base_url)) == 1
            assert [r.path for r in origin.requests] == ["/oauth2/token"]
        assert elsewhere.requests == []
    _, err = transcript.take()
    assert f"{origin.base_url} answered POST /oauth2/token with HTTP 307" in err
    assert f"a redirect to {elsewhere.base_url}: refused, nothing was sent there" in err
    transcript.assert_clean([ODD_SECRET, quote_plus(ODD_SECRET), ODD_CODE], caplog.text)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        ("invalid_grant", "Dropbox rejected the authorization code (invalid_grant: got "),
        ("invalid_request", "Dropbox OAuth token endpoint answered HTTP 400 (invalid_request: "),
        (f"bad code {ODD_CODE}", "Dropbox OAuth token endpoint answered HTTP 400 (bad code ***"),
    ],
)
def test_an_echoed_code_exchange_shows_no_secret(error, says, transcript, caplog):
    """The token endpoint answers 400 quoting the form it received (the code, the app secret),
    raw and URL-encoded: `connect` says what failed, with neither."""

    def echo(request: Received) -> Reply:
        said = f"got {request.text} i.e. {dict(parse_qsl(request.text))}"
        return Reply(400, {"error": error, "error_description": said})

    with LocalServer(echo) as server:
        assert cli.main(connect_to(server.base_url)) == 1
        assert quote_plus(ODD_SECRET) in server.everything()  # it did get them
    _, err = transcript.take()
    assert says in err
    secrets = [ODD_SECRET, quote_plus(ODD_SECRET), quote(ODD_SECRET, safe=""), ODD_CODE]
    transcript.assert_clean([*secrets, quote_plus(ODD_CODE)], caplog.text)
