"""The OAuth pages: the consent page (with the team choice of a multi-team emulator), the
code to paste, error and message pages. Templates are package data."""

from __future__ import annotations

import html
from collections.abc import Sequence
from importlib import resources
from string import Template
from typing import TYPE_CHECKING

from .team import Team

if TYPE_CHECKING:
    from .oauth import AuthRequest

SCOPE_TEXT = {
    "events.read": "View your team's activity log",
    "team_info.read": "View basic information about your team, including its name and policies",
    "members.read": "View your team membership",
    "team_data.member": "View structure of your team's and members' folders",
}
ACCESS_TEXT = {
    "offline": "offline (refresh token)",
    "online": "online (short-lived token)",
    "legacy": "legacy",
}
# Form fields the consent page does not sign: the admin's choices.
UNSIGNED = ("decision", "form_token", "team")


def consent_html(
    app_name: str,
    req: AuthRequest,
    teams: Sequence[Team],
    hidden: dict[str, str],
    form_token: str,
) -> bytes:
    """App, team (a choice when there are several), scopes, Allow / Cancel."""
    team = next(t for t in teams if t.team_id == req.team_id)
    admin = team.admins[0]
    fields = [
        f'  <input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in sorted(hidden.items())
    ]
    fields.append(f'  <input type="hidden" name="form_token" value="{form_token}">')
    items = "\n".join(
        f"  <li><code>{html.escape(s)}</code> {html.escape(SCOPE_TEXT.get(s, ''))}</li>"
        for s in req.scopes
    )
    access = ACCESS_TEXT.get(req.token_access_type or "", "app default")
    return _render(
        "authorize.html",
        {
            "app_name": app_name,
            "team_name": team.name,
            "admin_name": admin.display_name,
            "admin_email": admin.email,
        },
        {
            "scope_items": items,
            "hidden_fields": "\n".join(fields),
            "access_type": html.escape(access),
            "team_choice": _team_choice(teams, req.team_id),
        },
    )


def _team_choice(teams: Sequence[Team], chosen: str) -> str:
    """The team select of a multi-team emulator: which team's admin approves."""
    if len(teams) == 1:
        return ""
    options = "\n".join(
        f'   <option value="{html.escape(t.team_id)}"{" selected" if t.team_id == chosen else ""}>'
        f"{html.escape(t.name)} ({html.escape(t.admins[0].email)})</option>"
        for t in teams
    )
    return (
        ' <p class="team"><label for="team">Team approving the app (this emulator serves '
        'several):</label>\n  <select id="team" name="team" form="authorize-form">\n'
        f"{options}\n  </select></p>"
    )


def message_page(title: str, body_html: str) -> bytes:
    """A simple page (errors, the code to paste)."""
    return _render("page.html", {"title": title}, {"body": body_html})


def code_page(code: str) -> bytes:
    return message_page(
        "Enter this code into your app",
        " <p>Copy this code and paste it into the app to finish linking it:</p>\n"
        f' <code id="auth-code">{html.escape(code)}</code>',
    )


def _render(name: str, text: dict[str, str], raw: dict[str, str]) -> bytes:
    source = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    values = {k: html.escape(v) for k, v in text.items()} | raw
    return Template(source).safe_substitute(values).encode()
