"""A pending OAuth flow of the teams page (web/guard.py) as the web tests seal and open it."""

from __future__ import annotations

import dataclasses

from dropbox_team_log.web.guard import PendingFlow

_BASE = PendingFlow(
    state="state-abc",
    user_id="admin",
    browser_id="browser-1",
    conn_id="acme",
    app_key="app-key",
    app_secret="app-secret-0123456789",
    base_url=None,
    redirect_uri="http://127.0.0.1:8080/dropbox-teams/oauth/callback",
    code_verifier="verifier-0123456789-0123456789-0123456789-abc",
)


def pending_flow(**changes: str) -> PendingFlow:
    """The admin's flow for `acme` in browser-1, with `changes`."""
    return dataclasses.replace(_BASE, **changes)
