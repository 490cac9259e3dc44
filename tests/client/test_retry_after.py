"""Retry-After in every form: a local server answers the first call with a 429 carrying it (as
a header with a text body, or in Dropbox's JSON body), then with the team's info. The call must
wait what the answer asks, bounded, or the default when the answer is nonsense: never crash."""

from __future__ import annotations

import json
import time
from email.utils import formatdate

import pytest

from dropbox_team_log import settings
from dropbox_team_log.client.retry_after import parse_retry_after, wait_seconds
from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
from tests.helpers.local_servers import TEAM_INFO, LocalServer, Received, Reply, token_reply

DEFAULT = settings.RETRY_AFTER_DEFAULT_SECONDS
CAP = settings.RETRY_AFTER_MAX_SECONDS


def rate_limited_once(headers: dict[str, str], body: str | dict):
    """/2/team/get_info answers 429 once, then 200."""
    answered: list[int] = []

    def respond(request: Received) -> Reply:
        if request.path == "/oauth2/token":
            return token_reply()
        if not answered:
            answered.append(429)
            return Reply(429, body, headers)
        return Reply(200, TEAM_INFO)

    return respond


def first_wait(monkeypatch, respond) -> tuple[float, list[float]]:
    """The team info through the hook on `respond`; the first wait and every wait asked for."""
    waits: list[float] = []
    with LocalServer(respond) as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_RATE_LIMITED",
            json.dumps(
                {
                    "conn_type": "dropbox_team",
                    "login": "local-app-key",
                    "password": "local-app-secret",
                    "host": server.base_url,
                    "extra": {"refresh_token": "local-refresh-token"},
                }
            ),
        )
        hook = DropboxTeamHook(dropbox_team_conn_id="rate_limited", sleep=waits.append)
        assert hook.get_team_info()["name"] == TEAM_INFO["name"]
        assert hook.api.stats.retries["rate_limit"] == 1
    return waits[0], waits


def http_date(offset: float) -> str:
    return formatdate(time.time() + offset, usegmt=True)


HEADER_FORMS = {
    "integer": ("7", 7.0),
    "decimal": ("1.5", 1.5),
    "padded": (" 3 ", 3.0),
    "zero": ("0", 0.0),
    "negative": ("-5", DEFAULT),
    "negative_decimal": ("-0.5", DEFAULT),
    "garbage": ("soon", DEFAULT),
    "empty": ("", DEFAULT),
    "exponent": ("1e3", DEFAULT),
    "nan": ("nan", DEFAULT),
    "huge": ("9" * 40, CAP),
    "past_date": (http_date(-3600), 0.0),
    "bad_date": ("Mon, 99 Foo 2026 25:61:61 GMT", DEFAULT),
    "far_date": ("Fri, 31 Dec 9999 23:59:59 GMT", CAP),
}


@pytest.mark.parametrize("form", list(HEADER_FORMS))
def test_retry_after_header_in_every_form(form, monkeypatch):
    value, expected = HEADER_FORMS[form]
    wait, waits = first_wait(monkeypatch, rate_limited_once({"Retry-After": value}, "slow down"))
    assert wait == pytest.approx(expected)
    assert all(0 <= w <= CAP for w in waits)


def test_retry_after_as_an_http_date_waits_until_then(monkeypatch):
    wait, _ = first_wait(monkeypatch, rate_limited_once({"Retry-After": http_date(30)}, "later"))
    assert 27 <= wait <= 31  # HTTP-dates have whole seconds


def test_no_retry_after_waits_the_default(monkeypatch):
    wait, _ = first_wait(monkeypatch, rate_limited_once({}, "slow down"))
    assert wait == DEFAULT


def dropbox_body(retry_after: object, tag: str = "too_many_requests") -> dict:
    return {
        "error_summary": f"{tag}/..",
        "error": {"reason": {".tag": tag}, "retry_after": retry_after},
    }


BODY_FORMS = {
    "integer": (dropbox_body(4), 4.0),
    "decimal": (dropbox_body(2.5), 2.5),
    "negative": (dropbox_body(-3), DEFAULT),
    "string": (dropbox_body("soon"), DEFAULT),
    "huge": (dropbox_body(10**30), CAP),
    "unknown_reason": (dropbox_body(6, tag="brand_new_reason"), 6.0),
    "no_error_object": ({"error_summary": "too_many_requests/.."}, DEFAULT),
    "not_an_object": (["too", "many"], DEFAULT),
}


@pytest.mark.parametrize("form", list(BODY_FORMS))
def test_retry_after_in_the_json_body_in_every_form(form, monkeypatch):
    """No header: the SDK would read the body's field through its strict types."""
    body, expected = BODY_FORMS[form]
    wait, _ = first_wait(monkeypatch, rate_limited_once({}, body))
    assert wait == pytest.approx(expected)


def test_the_header_wins_over_the_body(monkeypatch):
    respond = rate_limited_once({"Retry-After": "2"}, dropbox_body(9))
    assert first_wait(monkeypatch, respond)[0] == pytest.approx(2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, None),
        (float("nan"), None),
        (float("inf"), float("inf")),
        ([1], None),
        ("1.5", 1.5),
        ("-1", None),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
    ],
)
def test_parse_retry_after_never_raises(value, expected):
    assert parse_retry_after(value) == expected


def test_wait_seconds_is_bounded():
    assert wait_seconds("1000000") == CAP
    assert wait_seconds(float("inf")) == CAP
    assert wait_seconds("x", default=2.0) == pytest.approx(2)
    assert wait_seconds("10", cap=3.0) == pytest.approx(3)
