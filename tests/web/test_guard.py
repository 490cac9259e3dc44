"""web/guard.py: CSRF tokens bound to user and browser; a sealed OAuth flow that only its own
user, browser and state can open, once, before it expires, and that shows no secret."""

from __future__ import annotations

import pytest

from dropbox_team_log.web.guard import FlowRejected, Guard
from tests.helpers.pending_flows import pending_flow as flow

SECRET = "api-secret-key-for-the-tests"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_csrf_tokens_belong_to_one_user_in_one_browser_under_one_key():
    guard = Guard(SECRET)
    token = guard.csrf_token("admin", "browser-1")
    assert guard.csrf_ok(token, "admin", "browser-1")
    assert not guard.csrf_ok(token, "other", "browser-1")
    assert not guard.csrf_ok(token, "admin", "browser-2")
    assert not guard.csrf_ok(token, "admin", None)
    assert not guard.csrf_ok(None, "admin", "browser-1")
    assert not Guard("another-key").csrf_ok(token, "admin", "browser-1")


def test_a_sealed_flow_opens_once_for_its_user_browser_and_state():
    guard = Guard(SECRET)
    sealed = guard.seal_flow(flow())
    for secret in ("app-secret-0123456789", "verifier-0123456789", "state-abc", "acme"):
        assert secret not in sealed  # encrypted, not just signed
    assert "app-secret" not in repr(flow()) and "verifier" not in repr(flow())
    with pytest.raises(FlowRejected, match="state does not match"):
        guard.open_flow(sealed, "forged", "admin", "browser-1")
    with pytest.raises(FlowRejected, match="another user or browser"):
        guard.open_flow(sealed, "state-abc", "intruder", "browser-1")
    with pytest.raises(FlowRejected, match="another user or browser"):
        guard.open_flow(sealed, "state-abc", "admin", "browser-2")
    assert guard.open_flow(sealed, "state-abc", "admin", "browser-1") == flow()
    with pytest.raises(FlowRejected, match="used already"):
        guard.open_flow(sealed, "state-abc", "admin", "browser-1")


def test_a_flow_expires_and_one_from_another_server_is_not_readable():
    clock = Clock()
    guard = Guard(SECRET, clock=clock)
    sealed = guard.seal_flow(flow())
    clock.now += guard.flow_ttl + 1
    with pytest.raises(FlowRejected, match="expired"):
        guard.open_flow(sealed, "state-abc", "admin", "browser-1")
    foreign = Guard("another-key").seal_flow(flow())
    with pytest.raises(FlowRejected, match="not issued by this server"):
        Guard(SECRET).open_flow(foreign, "state-abc", "admin", "browser-1")
    with pytest.raises(FlowRejected, match="no connect flow"):
        guard.open_flow(None, "state-abc", "admin", "browser-1")
    with pytest.raises(FlowRejected, match="no state"):
        guard.open_flow(sealed, "", "admin", "browser-1")
    tampered = sealed[:-8] + ("A" * 8 if not sealed.endswith("A" * 8) else "B" * 8)
    with pytest.raises(FlowRejected):
        guard.open_flow(tampered, "state-abc", "admin", "browser-1")


def test_flashes_round_trip_and_expire():
    clock = Clock()
    guard = Guard(SECRET, clock=clock)
    sealed = guard.seal_flash(False, "Test of 'acme': FAILED")
    assert guard.open_flash(sealed) == (False, "Test of 'acme': FAILED")
    assert guard.open_flash("garbage") is None
    clock.now += 3600
    assert guard.open_flash(sealed) is None


def test_no_guard_without_a_secret_key():
    with pytest.raises(ValueError, match=r"\[api\] secret_key"):
        Guard("")
