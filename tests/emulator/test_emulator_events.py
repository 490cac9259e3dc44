"""Generated events: decodable by the SDK, realistic in shape, deterministic, fast."""

from __future__ import annotations

import ipaddress
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from dropbox import stone_serializers, team_log

from dropbox_emulator import EmulatorConfig, running_emulator
from dropbox_emulator.config import DAY
from dropbox_emulator.events import UNKNOWN_TYPES, EventGenerator

CLOCK = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
UNKNOWN = {t for t, *_ in UNKNOWN_TYPES}


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    """Ten days of a busy team with more unknown types than usual."""
    cfg = EmulatorConfig(seed=3, clock=CLOCK, events_per_day=800, unknown_type_rate=0.01)
    gen = EventGenerator(cfg)
    first = cfg.timeline[0] // DAY
    return [orjson.loads(b) for d in range(first, first + 10) for b in gen.generate_day(d).body]


def test_every_generated_event_decodes_with_the_sdk(sample):
    types = Counter()
    for event in sample:
        decoded = stone_serializers.json_compat_obj_decode(
            team_log.TeamEvent_validator, event, strict=False
        )
        tag = event["event_type"][".tag"]
        types[tag] += 1
        if tag in UNKNOWN:  # the SDK loses the name: the pipeline must keep the raw JSON
            assert decoded.event_type.is_other()
        else:
            assert decoded.event_type._tag == tag
            assert decoded.details._tag == f"{tag}_details"
    assert set(types) >= UNKNOWN
    assert len(types) > 150  # the long tail of types shows up too
    for common in (
        "login_success",
        "login_fail",
        "file_add",
        "shared_link_view",
        "member_change_status",
        "device_change_ip_web",
    ):
        assert types[common] > 0


def test_unknown_types_are_not_in_the_sdk():
    for tag in UNKNOWN:
        assert tag not in team_log.EventType._tagmap


def test_actors_contexts_and_origins(sample):
    actors = Counter(e.get("actor", {}).get(".tag") for e in sample)
    assert {"user", "admin", "app", "dropbox", "anonymous"} <= set(actors)
    assert actors["user"] > actors["admin"] > actors["dropbox"]
    anonymous = [e for e in sample if e.get("actor") == {".tag": "anonymous"}]
    assert {e["event_type"][".tag"] for e in anonymous} == {
        "shared_link_view",
        "shared_content_view",
        "shared_content_download",
        "shared_link_download",
        "file_preview",
    }
    for e in anonymous:
        assert e["context"] == {".tag": "anonymous"}
        assert e["assets"][0][".tag"] in ("file", "folder") and e["assets"][0]["display_name"]
        if e["event_type"][".tag"] in ("shared_content_view", "shared_content_download"):
            assert e["details"]["shared_content_link"].startswith("https://www.dropbox.com/scl/")
    outsiders = [
        e for e in sample if e.get("actor", {}).get("user", {}).get(".tag") == "non_team_member"
    ]
    assert outsiders and all(e["involve_non_team_member"] for e in outsiders)
    ips = [
        ipaddress.ip_address(e["origin"]["geo_location"]["ip_address"])
        for e in sample
        if "geo_location" in e.get("origin", {})
    ]
    assert any(ip.version == 6 for ip in ips) and any(ip.version == 4 for ip in ips)
    countries = {
        e["origin"]["geo_location"]["country"]
        for e in sample
        if "geo_location" in e.get("origin", {})
    }
    assert len(countries) > 10
    methods = Counter(e["origin"]["access_method"][".tag"] for e in sample if "origin" in e)
    assert {"end_user", "api", "admin_console", "sign_in_as"} <= set(methods)
    for e in sample:
        actor = e.get("actor", {})
        user = actor.get("user") or actor.get("admin")
        if user:
            assert len(user["account_id"]) == 40 and user["account_id"].startswith("dbid:AA")


def test_visibility_delays(make_config):
    cfg = make_config(events_per_day=2000, late_rate=0.2, max_delay=20 * 3600)
    gen = EventGenerator(cfg)
    day = gen.generate_day(cfg.timeline[0] // DAY + 5)
    delays = [v - t for t, v in zip(day.ts, day.vis, strict=True)]
    assert max(delays) <= 20 * 3600 and min(delays) >= 1
    minutes = sum(d < 3600 for d in delays) / len(delays)
    assert 0.7 < minutes < 0.9  # mostly minutes, some hours
    assert any(d > 12 * 3600 for d in delays)
    assert day.ts == sorted(day.ts)


def test_duplicates_are_byte_identical_neighbours(make_config):
    cfg = make_config(events_per_day=3000, duplicate_rate=0.02)
    day = EventGenerator(cfg).generate_day(cfg.timeline[0] // DAY + 1)
    pairs = [i for i in range(1, len(day.body)) if day.body[i] == day.body[i - 1]]
    assert len(pairs) > 10
    assert all(day.ts[i] == day.ts[i - 1] for i in pairs)


def test_same_seed_same_bytes_different_seed_different(make_config):
    a = EventGenerator(make_config(seed=11)).generate_day(20500)
    b = EventGenerator(make_config(seed=11)).generate_day(20500)
    c = EventGenerator(make_config(seed=12)).generate_day(20500)
    assert a.body == b.body and a.vis == b.vis
    assert a.body != c.body


def test_same_seed_same_pages_over_http(make_config):
    """Two emulators with one config serve identical page bytes (cursors included)."""
    import requests

    bodies = []
    for _ in range(2):
        with running_emulator(make_config(seed=5)) as emu:
            code = emu.approve(scope="events.read")
            s = requests.Session()
            s.trust_env = False
            token = s.post(
                f"{emu.base_url}/oauth2/token",
                timeout=10,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "client_id": emu.config.app_key,
                    "client_secret": emu.config.app_secret,
                },
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            first = s.post(
                f"{emu.base_url}/2/team_log/get_events",
                data=b'{"limit": 300}',
                headers=headers,
                timeout=10,
            )
            cursor = first.json()["cursor"]
            second = s.post(
                f"{emu.base_url}/2/team_log/get_events/continue",
                timeout=10,
                headers=headers,
                data=orjson.dumps({"cursor": cursor}),
            )
            bodies.append((first.content, second.content, b"\n".join(emu.truth())))
    assert bodies[0] == bodies[1]


def test_days_hold_the_configured_volume():
    """events_per_day is honoured: weekdays 1.2x, weekend days 0.5x, each +-15%, duplicates on
    top. (How fast days are made is the bench's to measure, not a test's: make bench.)"""
    cfg = EmulatorConfig(seed=1, clock=CLOCK, events_per_day=16_667)
    gen = EventGenerator(cfg)
    first = cfg.timeline[0] // DAY
    for d in range(first + 1, first + 8):  # a whole week of full days
        weekday = (d + 3) % 7 < 5
        expected = 16_667 * (1.2 if weekday else 0.5)
        n = len(gen.generate_day(d).ts)
        assert 0.85 * expected <= n <= 1.15 * expected * (1 + 2 * cfg.duplicate_rate) + 1, (d, n)


def test_every_template_decodes_including_patched_ones(make_config):
    """All fixture types (the 6 with the catch-all client_type are patched) decode strictly."""
    gen = EventGenerator(make_config())
    assert len(gen.templates) == 631
    for tag, tpl in gen.templates.items():
        details = stone_serializers.json_compat_obj_decode(
            team_log.EventDetails_validator, tpl.details, strict=True
        )
        assert details._tag == f"{tag}_details"
    assert gen.templates["device_link_success"].details["device_session_info"]["client_type"] == {
        ".tag": "windows"
    }


def test_evicted_days_come_back_identical(make_config):
    from dropbox_emulator.state import EmulatorState

    state = EmulatorState(make_config(events_per_day=500, cache_events=1500))
    first = state.config.timeline[0] // DAY + 1
    before = [list(state.store.day(d).body) for d in range(first, first + 6)]
    assert len(state.store._days) < 6  # the LRU evicted some days
    after = [list(state.store.day(d).body) for d in range(first, first + 6)]
    assert before == after


def test_the_cli_sets_how_many_events_stay_made():
    from dropbox_emulator.__main__ import build_parser, config_from_args

    parser = build_parser()
    assert config_from_args(parser.parse_args(["--cache-events", "5000"])).cache_events == 5000
    assert config_from_args(parser.parse_args([])).cache_events == 200_000
