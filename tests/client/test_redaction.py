"""redaction: every form a secret travels in is shown as ***, the rest of the text stays.

The end-to-end checks (a token endpoint echoing the request into the connection test, the
exception, the logs, the CLI and the alert) are in tests/hooks, tests/cli and
tests/reliability/test_secrets.py; these pin the forms themselves.
"""

from __future__ import annotations

import base64
import json
import threading
from urllib.parse import quote, quote_plus, urlencode

import pytest

from dropbox_team_log.client import redaction
from dropbox_team_log.client.redaction import Redactor

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
