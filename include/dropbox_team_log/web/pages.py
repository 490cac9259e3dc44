"""The teams page's HTML: server-rendered, no script, every value escaped.

Team names, connection ids, messages and run ids come from connections, the registry and
Dropbox (a team name is chosen by whoever runs that team): each goes through `_e` (made
visible, then HTML-escaped, quotes included) and nothing else reaches the markup. Forms carry
the CSRF token.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dropbox_team_log.display import visible
from dropbox_team_log.settings import BACKFILL_DAG_ID, INCREMENTAL_DAG_ID, TEAMS_VARIABLE
from dropbox_team_log.web.status import DagState, TaskMark, TeamStatus

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px 24px; color: #1e1919; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 28px; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left;
 vertical-align: top; padding: 6px 8px; border-bottom: 1px solid #ddd; font-size: .92em; }
.flash { padding: 10px 12px; border-radius: 4px; margin: 12px 0; white-space: pre-wrap; }
.ok { background: #e6f4ea; } .error { background: #fce8e6; }
.muted { color: #6b6b6b; } .err { color: #a50e0e; }
form.inline { display: inline; } button { margin: 2px; }
label { display: block; margin-top: 8px; } input[type=text], input[type=password] { width: 28em; }
code { background: #f3f3f3; padding: 1px 4px; }
"""


def _e(value: Any) -> str:
    """Any value as safe HTML text (attribute-safe too)."""
    return html.escape(visible(value), quote=True)


def _lines(text: str) -> str:
    """A message of several lines: each escaped, the line breaks kept."""
    return "<br>".join(_e(line) for line in text.split("\n"))


def _utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


@dataclass(frozen=True)
class Pending:
    """An authorization link waiting for the admin (and, without redirect, the pasted code)."""

    conn_id: str
    url: str
    state: str
    paste: bool
    #: Shown inside the Airflow UI's frame, whose sandbox lets no link leave it.
    framed: bool = False


def page(
    statuses: Sequence[TeamStatus],
    *,
    csrf: str,
    callback_url: str,
    airflow_url: str,
    flash: tuple[bool, str] | None = None,
    pending: Pending | None = None,
    registry_note: str | None = None,
    now: datetime | None = None,
    dags: Sequence[DagState] = (),
    may_unpause: Collection[str] = (),
) -> str:
    now = now or datetime.now(UTC)
    parts = [
        f'<p class="nav"><a href="{_e(airflow_url)}">&larr; Airflow</a></p>',
        "<h1>Dropbox teams</h1>",
        f'<p class="muted">The teams the scheduled DAG <code>{_e(INCREMENTAL_DAG_ID)}</code> '
        f"collects (Variable <code>{_e(TEAMS_VARIABLE)}</code>).</p>",
    ]
    if flash is not None:
        ok, text = flash
        parts.append(
            f'<div class="flash {"ok" if ok else "error"}" id="flash">{_lines(text)}</div>'
        )
    if registry_note:
        parts.append(f'<p class="muted">{_e(registry_note)}</p>')
    parts.append(_teams_table(statuses, csrf, now))
    if dags:
        parts.append(_dags_table(dags, csrf, may_unpause))
    parts.append(_pending(pending, csrf) if pending else _connect_form(csrf, callback_url))
    return _document("Dropbox teams", "\n".join(parts))


def message_page(title: str, text: str, back: str) -> str:
    """A refusal or a failure outside the page (a callback that cannot be accepted)."""
    return _document(
        title,
        f'<h1>{_e(title)}</h1><p class="flash error" id="flash">{_lines(text)}</p>'
        f'<p><a href="{_e(back)}">Back to the Dropbox teams page</a></p>',
    )


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>"
    )


def _teams_table(statuses: Sequence[TeamStatus], csrf: str, now: datetime) -> str:
    head = (
        "<tr><th>Team</th><th>Connection</th><th>Connected since</th><th>Backfill</th>"
        "<th>Last successful sync</th><th>Last error and its fix</th><th></th></tr>"
    )
    rows = [_team_row(s, csrf, now) for s in statuses]
    return f'<table id="teams">\n{head}\n' + "\n".join(rows) + "\n</table>"


def _team_row(s: TeamStatus, csrf: str, now: datetime) -> str:
    name = _e(s.team_name) if s.team_name else '<span class="muted">(no team name)</span>'
    if not s.exists:
        name = '<span class="err">(no such connection)</span>'
    state = (
        " (paused)" if s.team.paused else (" (default, not registered)" if s.team.implicit else "")
    )
    cells = [
        f'<td class="team-name">{name}</td>',
        f"<td><code>{_e(s.conn_id)}</code>{_e(state)}</td>",
        f"<td>{_e(s.connected_at or '-')}</td>",
        f'<td class="backfill">{_backfill(s)}</td>',
        f"<td>{_success(s.last_success, now)}</td>",
        f'<td class="last-error">{_last_error(s)}</td>',
        f"<td>{_buttons(s, csrf)}</td>",
    ]
    return f'<tr data-conn-id="{_e(s.conn_id)}">' + "".join(cells) + "</tr>"


def _backfill(s: TeamStatus) -> str:
    b = s.backfill
    if b is None:
        if s.team.implicit or s.team.backfill_triggered_at:
            return '<span class="muted">none recorded</span>'
        return _e(f"pending: starts with the next run of {INCREMENTAL_DAG_ID}")
    days = f"{b.done}/{b.total} days" if b.total else "days not planned yet"
    failed = f", {b.failed} failed" if b.failed else ""
    return (
        f"{_e(b.state)}: {_e(days + failed)}<br><small>{_e(BACKFILL_DAG_ID)} {_e(b.run_id)}</small>"
    )


def _success(mark: TaskMark | None, now: datetime) -> str:
    if mark is None or mark.ended is None:
        return '<span class="muted">never</span>'
    return f"{_e(_utc(mark.ended))} ({_e(_age(now - mark.ended))} ago)<br>" + (
        f"<small>{_e(mark.label)}</small>"
    )


def _age(delta: Any) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{max(minutes, 0)} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} days"


def _last_error(s: TeamStatus) -> str:
    test = s.last_test
    parts = []
    if test and not test.get("ok"):
        parts.append(f"Test at {_e(test.get('at'))}: {_e(test.get('message'))}")
        if "reconnect" in str(test.get("message", "")):
            parts.append(
                "On this page: <em>Connect a team</em> below with connection id "
                f"<code>{_e(s.conn_id)}</code> (same app, a team admin clicks Allow)."
            )
    elif test:
        parts.append(f'<span class="muted">Test at {_e(test.get("at"))} passed.</span>')
    if s.last_failure is not None and (
        s.last_success is None
        or (s.last_failure.ended or datetime.min.replace(tzinfo=UTC))
        > (s.last_success.ended or datetime.min.replace(tzinfo=UTC))
    ):
        parts.append(
            f"Sync task {_e(s.last_failure.label)} of {_e(s.last_failure.dag_id)} failed at "
            f"{_e(_utc(s.last_failure.ended))}: press Test for the reason and its fix."
        )
    return "<br>".join(parts) or '<span class="muted">none</span>'


def _buttons(s: TeamStatus, csrf: str) -> str:
    if not s.exists and s.team.implicit:
        return ""
    actions = [("test", "Test")]
    if not s.team.implicit:
        actions.append(("resume", "Resume") if s.team.paused else ("pause", "Pause"))
        actions.append(("remove", "Remove"))
    return "".join(
        f'<form class="inline" method="post" action="teams/{_e(s.conn_id)}/{action}">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<button type="submit" name="action" value="{action}">{label}</button></form>'
        for action, label in actions
    )


def _dags_table(dags: Sequence[DagState], csrf: str, may_unpause: Collection[str]) -> str:
    """Each pipeline DAG paused or not; Unpause for a paused one the user may edit."""
    rows = []
    for d in dags:
        if d.paused is None:
            state, button = '<span class="muted">not parsed yet</span>', ""
        elif not d.paused:
            state, button = "active", ""
        else:
            state = '<span class="err">paused: runs nothing</span>'
            button = (
                f'<form class="inline" method="post" action="dags/{_e(d.dag_id)}/unpause">'
                f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
                '<button type="submit">Unpause</button></form>'
                if d.dag_id in may_unpause
                else '<span class="muted">you may not edit this DAG</span>'
            )
        rows.append(
            f'<tr data-dag-id="{_e(d.dag_id)}"><td><code>{_e(d.dag_id)}</code></td>'
            f'<td class="dag-state">{state}</td><td>{button}</td></tr>'
        )
    head = "<tr><th>DAG</th><th>State</th><th></th></tr>"
    return f'<h2>Pipeline DAGs</h2>\n<table id="dags">\n{head}\n' + "\n".join(rows) + "\n</table>"


def _connect_form(csrf: str, callback_url: str) -> str:
    return f"""<h2>Connect a team</h2>
<p>A Dropbox team admin approves the app; the refresh token is exchanged and stored on the server
and never shown. Create a team-scoped app with the scopes <code>team_info.read</code> and
<code>events.read</code> in the Dropbox App Console.</p>
<form method="post" action="connect" id="connect-form">
<input type="hidden" name="csrf" value="{_e(csrf)}">
<label>Connection id
 <input type="text" name="conn_id" value="dropbox_team_default" required></label>
<label>App key <input type="text" name="app_key" required></label>
<label>App secret (leave empty for an app that allows PKCE without it)
 <input type="password" name="app_secret" autocomplete="off"></label>
<label>API base URL (empty: Dropbox; the local emulator: <code>http://127.0.0.1:8765</code>)
 <input type="text" name="api_base_url"></label>
<fieldset><legend>After Allow</legend>
<label><input type="radio" name="mode" value="redirect" checked> Dropbox sends the admin back here:
 the app's redirect URIs include <code id="callback-url">{_e(callback_url)}</code></label>
<label><input type="radio" name="mode" value="paste"> No redirect URI registered: the admin
 copies the code Dropbox shows and pastes it here</label></fieldset>
<p><button type="submit">Create the authorization link</button></p>
</form>"""


def _pending(p: Pending, csrf: str) -> str:
    text = "Open this link as a Dropbox team admin and click Allow" + (
        "; then paste the code Dropbox shows below." if p.paste else "; you come back here."
    )
    parts = [
        f"<h2>Connect <code>{_e(p.conn_id)}</code></h2>",
        f"<p>{_e(text)} The link is valid for 10 minutes, in this browser.</p>",
    ]
    if p.framed:  # Dropbox's page refuses frames, and this frame may open no tab
        parts.append(
            "<p>Copy the link into a new tab of this browser (Dropbox's page cannot be shown "
            "inside the Airflow UI):</p>"
            f'<p><input type="text" id="authorize-url" readonly value="{_e(p.url)}" '
            'style="width: 100%"></p>'
        )
    else:
        parts.append(
            f'<p><a id="authorize-link" href="{_e(p.url)}" rel="noopener noreferrer"'
            + (' target="_blank">' if p.paste else ">")
            + "Open the Dropbox authorization page</a></p>"
            f'<p><small class="muted">{_e(p.url)}</small></p>'
        )
    if p.paste:
        parts.append(
            '<form method="post" action="oauth/code" id="code-form">'
            f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
            f'<input type="hidden" name="state" value="{_e(p.state)}">'
            '<label>Authorization code <input type="text" name="code" autocomplete="off" '
            'required></label><button type="submit">Connect</button></form>'
        )
    parts.append('<p><a href="./">Cancel</a></p>')
    return "\n".join(parts)
