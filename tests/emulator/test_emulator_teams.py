"""One emulator, several Dropbox teams, through the real SDK over HTTP: each team links through
its own admin's consent, its tokens see only its info and events, its cursors are refused by
the others, and faults, revocation and injected events aimed at one team leave the others
untouched. The single-team default is what it always was."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import dropbox
import orjson
import pytest
import requests
from dropbox.exceptions import ApiError, AuthError, InternalServerError, RateLimitError

from dropbox_emulator import EmulatorConfig, running_emulator
from dropbox_emulator.__main__ import build_parser, config_from_args
from dropbox_emulator.scenarios import demo_incidents

from .conftest import CLOCK, SCOPES, make_session

WINDOW = {"start_time": "2026-02-20T00:00:00Z", "end_time": "2026-03-01T00:00:00Z"}
TEAMS = [
    {"events_per_day": 300, "num_licensed_users": 80},  # heavy
    {"events_per_day": 30, "team_name": "Small Subsidiary"},  # light
    {"events_per_day": 60},
]


@pytest.fixture
def emulator_config(make_config):
    return make_config(
        teams=TEAMS,
        duplicate_rate=0.01,
        empty_page_rate=0.1,
        page_size=250,
        timeline_start=CLOCK - timedelta(days=12),
        timeline_end=CLOCK + timedelta(days=1),
    )


@pytest.fixture
def team_ids(emulator):
    return [t["team_id"] for t in emulator.teams()]


def _link(emulator, session, team) -> dropbox.oauth.OAuth2FlowNoRedirectResult:
    """The SDK's code flow, approved on the consent page by the admin of `team`."""
    cfg = emulator.config
    flow = dropbox.DropboxOAuth2FlowNoRedirect(
        cfg.app_key, cfg.app_secret, token_access_type="offline", scope=SCOPES
    )
    flow.requests_session = session
    return flow.finish(emulator.approve(flow.start(), team=team))


def _client(emulator, session, refresh_token: str) -> dropbox.DropboxTeam:
    return dropbox.DropboxTeam(
        oauth2_refresh_token=refresh_token,
        app_key=emulator.config.app_key,
        app_secret=emulator.config.app_secret,
        session=session,
        max_retries_on_error=0,
        max_retries_on_rate_limit=0,
    )


@pytest.fixture
def clients(emulator, session, team_ids):
    """One DropboxTeam client per team, each on a refresh token its own admin approved."""
    return [_client(emulator, session, _link(emulator, session, t).refresh_token) for t in team_ids]


def _read(client: dropbox.DropboxTeam, arg: dict) -> list[bytes]:
    """Every event of a query, as served (the SDK's auth and refresh; no typed decoding)."""
    route, events = "team_log/get_events", []
    while True:
        client.check_and_refresh_access_token()
        res = client.request_json_string_with_retry(
            "api", route, "rpc", json.dumps(arg), "team", None
        )
        page = orjson.loads(res.obj_result)
        events.extend(orjson.dumps(e) for e in page["events"])
        if not page["has_more"]:
            return events
        route, arg = "team_log/get_events/continue", {"cursor": page["cursor"]}


def _same(lines: list[bytes]) -> Counter[bytes]:
    return Counter(orjson.dumps(orjson.loads(line)) for line in lines)


def test_three_generated_teams_differ_and_the_first_is_the_single_team():
    single = EmulatorConfig(seed=7, clock=CLOCK)
    three = EmulatorConfig(seed=7, clock=CLOCK, teams=3)
    ids = [c.resolved_team_id for c in three.team_configs]
    names = [c.team_name for c in three.team_configs]
    assert len(set(ids)) == 3 and len(set(names)) == 3
    assert [c.seed for c in three.team_configs] == [7, 8, 9]
    assert ids[0] == single.resolved_team_id and names[0] == single.team_name
    assert three.team_config(ids[2]) is three.team_configs[2] is three.team_config(2)
    with pytest.raises(KeyError):
        three.team_config("dbtid:nobody")
    with pytest.raises(ValueError, match="team ids must differ"):
        EmulatorConfig(teams=[{"team_id": "dbtid:same"}, {"team_id": "dbtid:same"}])
    with pytest.raises(ValueError, match="unknown team field"):
        EmulatorConfig(teams=[{"colour": "blue"}])


def test_the_first_of_several_teams_serves_the_single_team_s_bytes(make_config):
    window = (CLOCK - timedelta(days=3), CLOCK)
    with running_emulator(make_config()) as one, running_emulator(make_config(teams=3)) as three:
        assert three.truth(*window, team=0) == one.truth(*window)
        assert three.truth(*window, team=1) != one.truth(*window)


def test_the_consent_page_lets_the_admin_choose_the_team(emulator, team_ids):
    url = (
        f"{emulator.base_url}/oauth2/authorize?client_id={emulator.config.app_key}"
        f"&response_type=code&token_access_type=offline&team={team_ids[1]}"
    )
    page = requests.get(url, timeout=10).text
    assert '<select id="team" name="team"' in page
    for team in emulator.teams():
        assert f'value="{team["team_id"]}"' in page and team["name"] in page
    assert f'value="{team_ids[1]}" selected' in page
    assert "Small Subsidiary" in page.split("<select")[0]  # the heading names the chosen team
    unknown = requests.get(url.replace(team_ids[1], "dbtid:nobody"), timeout=10)
    assert unknown.status_code == 400 and "Invalid team" in unknown.text


def test_each_team_s_tokens_see_only_its_own_info(emulator, session, team_ids):
    for i, team_id in enumerate(team_ids):
        result = _link(emulator, session, team_id if i else None)  # no choice: the first team
        assert result.account_id == team_id  # the token response's team_id
        info = _client(emulator, session, result.refresh_token).team_get_info()
        cfg = emulator.config.team_config(i)
        assert (info.team_id, info.name) == (team_id, cfg.team_name)
        assert info.num_licensed_users == cfg.num_licensed_users
    assert emulator.config.team_config(0).num_licensed_users == 80


def test_scripted_approval_and_team_indexes_name_the_same_team(emulator, session, team_ids):
    flow = dropbox.DropboxOAuth2FlowNoRedirect(
        emulator.config.app_key, emulator.config.app_secret, token_access_type="offline"
    )
    flow.requests_session = session
    code = emulator.approve(team=2, scope=SCOPES)
    result = flow.finish(code)
    assert result.account_id == team_ids[2]
    assert _client(emulator, session, result.refresh_token).team_get_info().team_id == team_ids[2]


def test_each_team_reads_exactly_its_own_truth(emulator, clients, team_ids):
    start, end = WINDOW["start_time"], WINDOW["end_time"]
    truths = [emulator.truth(start, end, team=t) for t in team_ids]
    assert len(truths[0]) > 5 * len(truths[1]) > 0, "one heavy team, one light"
    assert any(len(t) > len(set(t)) for t in truths), "genuine duplicates should occur"
    for client, truth in zip(clients, truths, strict=True):
        assert _same(_read(client, {"time": WINDOW, "limit": 1000})) == _same(truth)
    assert not set(truths[0]) & set(truths[1]), "teams share no event"
    assert _same(emulator.truth(start, end)) == sum(map(_same, truths), Counter())
    assert emulator.truth_count(start, end) == sum(map(len, truths))
    assert emulator.truth_count(start, end, team=team_ids[1]) == len(truths[1])
    typed = clients[1].team_log_get_events()
    events = list(typed.events)
    while typed.has_more:
        typed = clients[1].team_log_get_events_continue(typed.cursor)
        events.extend(typed.events)
    assert len(events) == emulator.truth_count(team=1)


def test_a_cursor_of_one_team_is_a_bad_cursor_for_another(clients):
    first = clients[0].team_log_get_events(limit=10)
    assert first.has_more
    with pytest.raises(ApiError) as err:
        clients[1].team_log_get_events_continue(first.cursor)
    assert err.value.error.is_bad_cursor()
    assert clients[0].team_log_get_events_continue(first.cursor).events  # still good for its own


def test_faults_aimed_at_one_team_leave_the_others_untouched(emulator, clients, team_ids):
    emulator.reset_stats()
    emulator.set_faults([{"kind": "server_error", "count": None, "team": 2}])  # all, by index
    emulator.set_faults([{"kind": "rate_limit", "route": "2/*", "count": None}], team=team_ids[1])
    limit = {"kind": "rate_limit", "route": "2/*", "count": None, "retry_after": 7}
    emulator.set_faults([limit], team=1)
    faults = emulator.faults()["faults"]
    assert sorted(f["team"] for f in faults) == sorted([team_ids[1], team_ids[2]])
    assert clients[0].team_get_info().team_id == team_ids[0]
    assert clients[0].team_log_get_events(limit=5).events
    with pytest.raises(RateLimitError) as limited:
        clients[1].team_get_info()
    assert limited.value.backoff == 7  # its own faults were replaced, not added to
    with pytest.raises(InternalServerError):
        clients[2].team_get_info()
    emulator.clear_faults(team=1)
    assert clients[1].team_get_info().team_id == team_ids[1]
    with pytest.raises(InternalServerError):
        clients[2].team_get_info()
    stats = emulator.stats()["team_calls"]
    assert stats[team_ids[0]]["2/team_log/get_events"] == 1
    assert stats[team_ids[1]]["2/team/get_info"] == 2
    emulator.clear_faults()
    assert clients[2].team_get_info().team_id == team_ids[2]


def test_a_cursor_reset_aimed_at_one_team_resets_only_its_cursors(emulator, clients, team_ids):
    emulator.set_faults([{"kind": "cursor_reset", "count": None}], team=team_ids[0])
    heavy, light = (c.team_log_get_events(limit=10) for c in clients[:2])
    with pytest.raises(ApiError) as err:
        clients[0].team_log_get_events_continue(heavy.cursor)
    assert err.value.error.is_reset()
    assert clients[1].team_log_get_events_continue(light.cursor).cursor


def test_revoking_one_team_leaves_the_others_linked(emulator, session, clients, team_ids):
    assert emulator.revoke_refresh_tokens(team=team_ids[1]) == "team"
    emulator.expire_access_tokens()  # every client must refresh now
    assert clients[0].team_get_info().team_id == team_ids[0]
    assert clients[2].team_log_get_events(limit=3).events
    with pytest.raises(AuthError):
        clients[1].team_get_info()
    # The revoked team links again, as its admin would.
    relinked = _link(emulator, session, team_ids[1])
    assert relinked.account_id == team_ids[1]


def test_expiring_one_team_s_access_tokens_makes_only_its_client_refresh(
    emulator, clients, team_ids
):
    for client in clients:
        client.team_get_info()
    emulator.reset_stats()
    emulator.expire_access_tokens(team=team_ids[2])
    for client in clients:
        client.team_get_info()
    calls = emulator.stats()["team_calls"]
    assert calls[team_ids[2]].get("oauth2/token") == 1
    assert "oauth2/token" not in calls.get(team_ids[0], {})


def test_events_injected_into_one_team_reach_only_it(emulator, team_ids):
    before = [emulator.truth_count(team=t) for t in team_ids]
    event = {
        "timestamp": "2026-02-28T10:00:00Z",
        "event_category": {".tag": "logins"},
        "event_type": {".tag": "login_success", "description": "Signed in"},
        "details": {".tag": "login_success_details", "is_emm_managed": False},
    }
    emulator.add_events([event], team=team_ids[2])
    after = [emulator.truth_count(team=t) for t in team_ids]
    assert after == [before[0], before[1], before[2] + 1]
    with pytest.raises(RuntimeError, match="name the team"):
        emulator.add_events([event])
    with pytest.raises(RuntimeError, match="no team"):
        emulator.truth_count(team="dbtid:nobody")
    # A team's crafted activity is made with its own config: its domain, its people.
    light = emulator.config.team_config(1)
    incidents = demo_incidents(light, int(CLOCK.timestamp()))
    emulator.add_events(incidents, team=1)
    injected = emulator.truth(CLOCK - timedelta(days=6), CLOCK, team=1)
    assert _same([orjson.dumps(e) for e in incidents]) <= _same(injected)
    assert light.team_domain.encode() in orjson.dumps(incidents)
    assert emulator.truth_count(team=0) == before[0]


def test_one_team_is_the_default_as_before(make_config):
    with running_emulator(make_config()) as emu:
        (team,) = emu.teams()
        assert team["team_id"] == emu.config.resolved_team_id == emu.health()["team_id"]
        url = (
            f"{emu.base_url}/oauth2/authorize?client_id={emu.config.app_key}"
            "&response_type=code&token_access_type=offline"
        )
        assert "<select" not in requests.get(url, timeout=10).text
        session = make_session(emu.base_url)
        assert _link(emu, session, 0).account_id == team["team_id"]  # its index names it too
        assert emu.add_events([]) == 0  # no team to name


def test_the_cli_serves_several_teams(tmp_path):
    parser = build_parser()
    assert config_from_args(parser.parse_args([])).team_configs[0].team_name == (
        "Northwind Research"
    )
    three = config_from_args(parser.parse_args(["--teams", "3", "--seed", "4"]))
    assert [c.seed for c in three.team_configs] == [4, 5, 6]
    listed = tmp_path / "teams.json"
    listed.write_text(json.dumps({"teams": [{"team_name": "A"}, {"events_per_day": 5}]}))
    two = config_from_args(parser.parse_args(["--teams", str(listed)]))
    assert two.team_configs[0].team_name == "A"
    assert two.team_configs[1].events_per_day == 5
    inline = config_from_args(parser.parse_args(["--teams", '[{"seed": 99}]']))
    assert inline.team_configs[0].seed == 99
    for bad in ("0", "[]", '[{"colour": 1}]', str(tmp_path / "missing.json")):
        with pytest.raises(SystemExit):
            parser.parse_args(["--teams", bad])


def test_a_fault_for_every_team_counts_each_team_s_calls_apart(emulator, clients, team_ids):
    for client in clients:  # every client holds an access token: only get_info is counted
        client.check_and_refresh_access_token()
    emulator.set_faults([{"kind": "rate_limit", "route": "2/team/get_info", "after": 1}])
    for client in clients:
        client.team_get_info()  # each team's first call passes, whoever called before
    for client in clients:
        with pytest.raises(RateLimitError):
            client.team_get_info()  # and each team's second is limited: its own limit
    (fault,) = emulator.faults()["faults"]
    assert (fault["matched"], fault["injected"]) == (6, 3)
    assert fault["by_team"] == {t: [2, 1] for t in team_ids}


def test_the_pipeline_s_reader_keeps_each_team_exact_while_one_is_limited_and_one_revoked(
    emulator, session, team_ids
):
    """What the multi-team pipeline will see: a reader per team on its own refresh token."""
    from dropbox_team_log.errors import RefreshTokenRevokedError
    from tests.helpers.pipeline import multiset, read_events, reader_at

    start, end = (int((CLOCK - timedelta(days=d)).timestamp()) for d in (8, 0))
    readers = [
        reader_at(
            emulator.base_url,
            page_limit=200,
            oauth2_refresh_token=_link(emulator, session, t).refresh_token,
            app_key=emulator.config.app_key,
            app_secret=emulator.config.app_secret,
        )
        for t in team_ids
    ]
    limited = {"kind": "rate_limit", "route": "2/team_log/*", "every": 2, "count": 5}
    emulator.set_faults([limited], team=team_ids[0])
    emulator.set_faults([{"kind": "revoke_refresh_token", "after": 2}], team=team_ids[2])
    for i in (0, 1):
        events = read_events(readers[i], start, end)
        assert multiset(orjson.dumps(e) for e in events) == multiset(
            emulator.truth(start, end, team=team_ids[i])
        )
    with pytest.raises(RefreshTokenRevokedError):
        read_events(readers[2], start, end)
    (heavy, revoked) = sorted(emulator.faults()["faults"], key=lambda f: f["kind"])
    assert heavy["injected"] == 5 and revoked["injected"] == 1
