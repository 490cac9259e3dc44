"""web/pages.py: every value that comes from a connection, the registry, Dropbox or the DB is
text, never markup; the buttons a team gets; the link shown framed or not."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser

from dropbox_team_log.team_registry import Team
from dropbox_team_log.web import pages
from dropbox_team_log.web.status import Backfill, DagState, TaskMark, TeamStatus

EVIL = '"><i id="pwn" onclick="x()">&amp;\x1b[2J'
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class Tags(HTMLParser):
    """Every tag and attribute of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def status(team: Team, **changes) -> TeamStatus:
    values = dict(
        team=team,
        exists=True,
        team_name=EVIL,
        connected_at=EVIL,
        backfill=Backfill(run_id=EVIL, state=EVIL, done=3, total=61, failed=1),
        last_success=TaskMark(EVIL, EVIL, EVIL, datetime(2026, 12, 6, 9, 0, tzinfo=UTC)),
        last_failure=TaskMark(EVIL, EVIL, EVIL, datetime(2026, 12, 6, 10, 0, tzinfo=UTC)),
        last_test={"at": EVIL, "ok": False, "message": EVIL + " reconnect"},
    )
    values.update(changes)
    return TeamStatus(**values)


def render(*statuses: TeamStatus, **kw) -> str:
    kw.setdefault("csrf", "token")
    kw.setdefault("callback_url", "http://127.0.0.1/dropbox-teams/oauth/callback")
    kw.setdefault("airflow_url", "http://127.0.0.1/")
    return pages.page(list(statuses), now=NOW, **kw)


def test_no_value_becomes_markup_wherever_it_is_shown():
    text = render(
        status(Team("acme", paused=True)),
        flash=(False, EVIL + "\nsecond line"),
        registry_note=EVIL,
        pending=pages.Pending(
            "acme", "https://www.dropbox.com/oauth2/authorize?x=" + EVIL, EVIL, paste=True
        ),
    )
    tags = Tags(text).tags
    assert all(tag != "i" for tag, _ in tags)
    assert all("onclick" not in attrs for _, attrs in tags)
    assert "\x1b" not in text
    assert text.count("&quot;&gt;&lt;i id=&quot;pwn&quot;") >= 10
    assert "&amp;amp;\\u001b[2J<br>second line</div>" in text  # lines kept, each escaped
    assert "3/61 days, 1 failed" in text
    assert "3 h ago" in text  # the last success's age
    assert "Connect a team</em> below with connection id" in text  # the revoked grant's fix
    code_form = [attrs for tag, attrs in tags if tag == "input" and attrs.get("name") == "state"]
    shown = EVIL.replace("\x1b", "\\u001b")  # a control character made visible
    assert code_form == [{"type": "hidden", "name": "state", "value": shown}]


def test_buttons_by_team_kind_and_csrf_in_every_form():
    text = render(
        status(Team("acme")),
        status(Team("globex", paused=True)),
        status(Team("dropbox_team_default", implicit=True)),
        status(Team("gone", implicit=True), exists=False),
        csrf="csrf-123",
    )
    tags = Tags(text).tags
    actions = [attrs["action"] for tag, attrs in tags if tag == "form"]
    assert actions == [
        "teams/acme/test",
        "teams/acme/pause",
        "teams/acme/remove",
        "teams/globex/test",
        "teams/globex/resume",
        "teams/globex/remove",
        "teams/dropbox_team_default/test",
        "connect",
    ]
    tokens = [a["value"] for t, a in tags if t == "input" and a.get("name") == "csrf"]
    assert tokens == ["csrf-123"] * len(actions)
    assert all(a.get("method") == "post" for t, a in tags if t == "form")


def test_unpause_only_for_a_paused_dag_the_user_may_edit():
    dags = [
        DagState("incremental", paused=True),
        DagState("backfill", paused=False),
        DagState("report", paused=None),
        DagState("detections", paused=True),
        DagState(EVIL, paused=True),
    ]
    text = render(dags=dags, may_unpause={"incremental", EVIL}, csrf="csrf-123")
    tags = Tags(text).tags
    unpause = [a["action"] for t, a in tags if t == "form" and a["action"].endswith("/unpause")]
    shown = EVIL.replace("\x1b", "\\u001b")
    assert unpause == ["dags/incremental/unpause", f"dags/{shown}/unpause"]
    assert all(tag != "i" for tag, _ in tags)
    rows = {a["data-dag-id"] for t, a in tags if t == "tr" and "data-dag-id" in a}
    assert rows == {"incremental", "backfill", "report", "detections", shown}
    assert "not parsed yet" in text and "you may not edit this DAG" in text  # detections
    tokens = [a["value"] for t, a in tags if t == "input" and a.get("name") == "csrf"]
    assert tokens == ["csrf-123"] * len([t for t, _ in tags if t == "form"])
    assert 'id="dags"' not in render()  # no DAG rows read: no table


def test_framed_the_link_is_to_copy_and_on_its_own_page_a_link():
    url = "http://127.0.0.1:8765/oauth2/authorize?state=s&code_challenge=c"
    framed = Tags(render(pending=pages.Pending("acme", url, "s", paste=False, framed=True))).tags
    assert not [a for t, a in framed if t == "a" and a.get("id") == "authorize-link"]
    assert [a["value"] for t, a in framed if a.get("id") == "authorize-url"] == [url]
    alone = Tags(render(pending=pages.Pending("acme", url, "s", paste=True))).tags
    links = [a for t, a in alone if t == "a" and a.get("id") == "authorize-link"]
    assert links[0]["href"] == url and links[0]["target"] == "_blank"
