"""redaction: every form a secret travels in is shown as ***, the rest of the text stays.

The end-to-end checks (a token endpoint echoing the request into the connection test, the
exception, the logs, the CLI and the alert) are in tests/hooks, tests/cli and
tests/reliability/test_secrets.py; these pin the forms themselves.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from urllib.parse import quote, quote_plus, urlencode

import pytest

from dropbox_emulator import running_emulator
from dropbox_team_log.client import redaction
from dropbox_team_log.client.redaction import Redactor
from dropbox_team_log.hooks.dropbox_team import DropboxTeamHook
from dropbox_team_log.settings import SCRUB_AFTER_TOKEN_EXPIRY_SECONDS
from tests.helpers.connecting import emulator_config, granted
from tests.helpers.pipeline import connection_json, utc

SECRET = "app-s3cret/with+chars=&0f9d"


def fresh(*secrets: str) -> Redactor:
    redactor = Redactor()
    redactor.register(*secrets)
    return redactor


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote(SECRET, safe="").lower(),  # percent-escapes in lower case
        quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        "app-s3cret/with+chars=&amp;0f9d",  # HTML
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
    ],
)
def test_each_form_of_a_secret_is_masked(form):
    text = f"error: {form} was not expected"
    assert fresh(SECRET).scrub(text) == "error: *** was not expected"


def test_a_form_body_and_a_basic_header_echoed_back():
    redactor = fresh(SECRET, "refresh-token-value-01")
    redactor.register_basic("app-key", SECRET)
    body = urlencode({"refresh_token": "refresh-token-value-01", "client_secret": SECRET})
    basic = base64.b64encode(f"app-key:{SECRET}".encode()).decode()
    scrubbed = redactor.scrub(f"you sent {body} with Authorization: Basic {basic}")
    assert scrubbed == "you sent refresh_token=***&client_secret=*** with Authorization: Basic ***"


def test_short_and_empty_values_are_not_secrets():
    redactor = fresh("", "abc", None)  # would mask ordinary words
    assert redactor.scrub("abc def") == "abc def"


def test_the_longest_form_is_masked_whole():
    redactor = fresh("secret-one", "secret-one-and-more")
    assert redactor.scrub("x secret-one-and-more y secret-one") == "x *** y ***"


def test_scrub_takes_any_value():
    redactor = fresh(SECRET)
    assert redactor.scrub(ValueError(f"bad {SECRET}")) == "bad ***"
    assert redactor.scrub(None) == "None"


def test_the_process_registry_is_shared_and_thread_safe():
    secrets = [f"thread-secret-{i:04d}" for i in range(200)]
    threads = [threading.Thread(target=redaction.register, args=(s,)) for s in secrets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert redaction.scrub(" ".join(secrets)) == " ".join(["***"] * len(secrets))


class Clock:
    """A settable `time.time` for a Redactor."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_expiring_secret_is_scrubbed_until_its_time_then_forgotten():
    clock = Clock(1000.0)
    redactor = Redactor(clock)
    redactor.register(SECRET)  # long-lived: the app secret, a refresh token
    redactor.register("access-token-0001", forget_after=2000.0)
    clock.now = 2000.0  # its last second: still scrubbed
    redactor.register("access-token-0002", forget_after=3000.0)
    assert redactor.scrub("access-token-0001 access-token-0002") == "*** ***"
    clock.now = 2000.5  # forgotten at the next registration after its time
    redactor.register("access-token-0003", forget_after=4000.0)
    assert redactor.scrub(f"access-token-0001 {SECRET} access-token-0002") == (
        "access-token-0001 *** ***"
    )
    assert len(redactor) == 3


def test_a_secret_registered_again_keeps_its_later_time():
    clock = Clock(0.0)
    redactor = Redactor(clock)
    redactor.register(SECRET)
    redactor.register(SECRET, forget_after=10.0)  # e.g. a refresh token seen in a token answer
    clock.now = 11.0
    redactor.register("another-secret")
    assert redactor.scrub(SECRET) == "***"


def test_a_process_that_obtains_tokens_for_months_scrubs_only_the_live_ones():
    clock = Clock(0.0)
    redactor = Redactor(clock)
    redactor.register(SECRET)
    for i in range(2000):  # a token every 10 minutes for ~2 weeks, each good for 4 h + a day
        clock.now = i * 600.0
        redactor.register(f"sl.access-token-{i:06d}", forget_after=clock.now + 4 * 3600 + 86400)
    assert len(redactor) == 1 + 169  # the app secret and the last 28 h of tokens
    assert redactor.scrub("sl.access-token-001999 sl.access-token-000000") == (
        "*** sl.access-token-000000"
    )


def test_the_token_watch_registers_an_access_token_until_a_day_past_its_expiry(
    monkeypatch, spy, airflow_db
):
    """Real SDK and HTTP against the emulator: the token the hook obtains is scrubbed, and
    forgotten once SCRUB_AFTER_TOKEN_EXPIRY_SECONDS past the expiry the API gave it."""
    clock = Clock(time.time())
    monkeypatch.setattr(redaction, "SECRETS", Redactor(clock))
    at = utc(2026, 11, 20)
    with running_emulator(seed=3, clock=at, events_per_day=5) as emu:
        conn = connection_json(emu, connected_at=at)  # its own `connect`: tokens of its own
        monkeypatch.setenv("AIRFLOW_CONN_DROPBOX_TEAM_DEFAULT", conn)
        before = set(spy.tokens)
        DropboxTeamHook().get_team_info()
        lifetime = emu.config.access_token_lifetime
    (access_token,) = spy.tokens - before  # what the SDK obtained with the saved refresh token
    assert redaction.scrub(f"echo {access_token}") == "echo ***"
    clock.now += lifetime + SCRUB_AFTER_TOKEN_EXPIRY_SECONDS - 60
    redaction.register("a-later-secret")
    assert redaction.scrub(access_token) == "***"
    clock.now += 120
    redaction.register("a-later-secret")
    assert redaction.scrub(access_token) == access_token


def test_the_code_exchange_access_token_is_forgotten_a_day_past_its_expiry(monkeypatch, spy):
    """`connect`'s own code -> tokens call (real SDK flow over HTTP against the emulator): its
    access token is scrubbed until a day past its expiry, as a refreshed one is; the refresh
    token, which the connection keeps, for the life of the process."""
    clock = Clock(time.time())
    monkeypatch.setattr(redaction, "SECRETS", Redactor(clock))
    with running_emulator(emulator_config()) as emu:
        grant = granted(emu, "code_exchange_team")
        lifetime = emu.config.access_token_lifetime
    refresh_token = grant["extra"]["refresh_token"]
    (access_token,) = spy.tokens - {refresh_token}
    assert redaction.scrub(f"{access_token} {refresh_token}") == "*** ***"
    clock.now += lifetime + SCRUB_AFTER_TOKEN_EXPIRY_SECONDS - 60
    redaction.register("a-later-secret")
    assert redaction.scrub(f"{access_token} {refresh_token}") == "*** ***"
    clock.now += 120
    redaction.register("a-later-secret")
    assert redaction.scrub(f"{access_token} {refresh_token}") == f"{access_token} ***"
