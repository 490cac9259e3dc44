"""A small emulator dataset whose every analyst-facing string is hostile, for the escaping tests.

Anyone outside a team can name a file, a folder or a link, so each string the report and the
terminal show holds both markup (tags Plotly's label pseudo-HTML and HTML would render, entities,
script) and characters that steer a terminal (an OSC retitle, a screen clear, BEL, a CR/LF-forged
table row, a C1 CSI, DEL, NUL, a bidi override, the Unicode line separator). Synced through the
real API, SDK and writer (`analyst_data.sync_days`); generated events fill both periods around
them, so the report's "new this period" news quotes the hostile values too.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from tests.helpers.analyst_data import T0, sync_days

#: The days synced before T0; the report tests look at the last REPORT_DAYS whole days of them.
SYNCED_DAYS = 15
REPORT_DAYS = 7
#: Each hostile event repeats this often: enough to top every ranked table and chart.
REPEATS = 12

#: Markup that must show as these very characters: never a link, a style, a break or a script.
MARKUP = (
    '<a href="https://evil.example/">click me</a>',
    "<b>bold</b><i>slanted</i>",
    "top<br>bottom",
    "&lt;u&gt;an entity&lt;/u&gt; &amp; &#60;s&#62;",
    '<span style="font-size:80px">big</span>',
    "</script><script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
)
#: Characters that steer a terminal or the reading direction instead of showing.
CONTROLS = (
    "\x1b]0;pwned\x07\x1b[2J\x1b[H\r\n  forged  | row  99\x9b31m\x7f\x00\u202egpj.exe\u2066\u2028"
)
#: The raw characters none of the people-facing outputs may contain.
STEERING = ("\x1b", "\x07", "\r", "\n", "\x9b", "\x7f", "\x00", "\u202e", "\u2066", "\u2028")


def _hostile(kind: int, prefix: str = "") -> str:
    """A hostile string: control characters first, the markup last (it survives the charts'
    cutting of long labels to their end)."""
    return f"{prefix}{CONTROLS}{MARKUP[kind % len(MARKUP)]}"


#: The exact string the dataset holds in each of these fields (as the analyst views name them).
HOSTILE = {
    "asset_path": _hostile(0, "/Shared/"),
    "asset_name": _hostile(1),
    "shared_link": _hostile(2, "https://www.dropbox.com/s/abc/"),
    "ip_address": _hostile(3),
    "country": _hostile(4),
    "anonymous_event_type": _hostile(5),
    "admin_email": _hostile(6, "admin@"),
    "admin_name": _hostile(0),
    "error_message": _hostile(1),
    "error_detail": _hostile(2),
    "admin_event_category": _hostile(3),
    "outsider_email": _hostile(4, "outsider@"),
}


def _origin() -> dict:
    return {
        "access_method": {".tag": "end_user", "end_user": {".tag": "web"}},
        "geo_location": {"ip_address": HOSTILE["ip_address"], "country": HOSTILE["country"]},
    }


def _anonymous_open(timestamp: str) -> dict:
    return {
        "timestamp": timestamp,
        "event_category": {".tag": "sharing"},
        "event_type": {".tag": HOSTILE["anonymous_event_type"], "description": "opened"},
        "details": {
            ".tag": "shared_link_view_details",
            "shared_content_link": HOSTILE["shared_link"],
        },
        "actor": {".tag": "anonymous"},
        "origin": _origin(),
        "involve_non_team_member": True,
        "context": {".tag": "anonymous"},
        "assets": [
            {
                ".tag": "file",
                "path": {"contextual": HOSTILE["asset_path"]},
                "display_name": HOSTILE["asset_name"],
                "file_id": "id:hostile0000000000000001",
            }
        ],
    }


def _admin_sign_in_failure(timestamp: str) -> dict:
    admin = {
        ".tag": "team_member",
        "account_id": "dbid:AAhostile",
        "display_name": HOSTILE["admin_name"],
        "email": HOSTILE["admin_email"],
    }
    return {
        "timestamp": timestamp,
        "event_category": {".tag": HOSTILE["admin_event_category"]},
        "event_type": {".tag": "login_fail", "description": "(logins) Failed to sign in"},
        "details": {
            ".tag": "login_fail_details",
            "login_method": {".tag": "password"},
            "error_details": {
                "user_friendly_message": HOSTILE["error_message"],
                "technical_error_message": HOSTILE["error_detail"],
            },
        },
        "actor": {".tag": "admin", "admin": admin},
        "origin": _origin(),
        "involve_non_team_member": False,
        "context": {".tag": "team_member", **admin},
    }


def _outside_share(timestamp: str) -> dict:
    outsider = {".tag": "non_team_member", "email": HOSTILE["outsider_email"]}
    return {
        "timestamp": timestamp,
        "event_category": {".tag": "sharing"},
        "event_type": {".tag": "shared_content_add_member", "description": "shared"},
        "details": {".tag": "shared_content_add_member_details"},
        "actor": {
            ".tag": "user",
            "user": {".tag": "team_member", "display_name": "Ann", "email": "ann@example.com"},
        },
        "origin": _origin(),
        "involve_non_team_member": True,
        "context": {".tag": "team_member", "email": "ann@example.com"},
        "participants": [{".tag": "user", "user": outsider}],
        "assets": [
            {".tag": "file", "path": {"contextual": HOSTILE["asset_path"]}, "display_name": "x"}
        ],
    }


def hostile_dataset_events(at: datetime) -> list[dict]:
    """REPEATS anonymous opens, admin sign-in failures and outside shares from `at` on."""
    events = []
    for minute in range(REPEATS):
        timestamp = (at + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")
        events += [
            _anonymous_open(timestamp),
            _admin_sign_in_failure(timestamp),
            _outside_share(timestamp),
        ]
    return events


@contextmanager
def hostile_dataset(root: Path) -> Generator[Path, None, None]:
    """The SYNCED_DAYS days before T0 (generated events plus the hostile ones, three days
    before T0) synced from a fresh emulator into `root`; yields `root`."""
    from dropbox_emulator import running_emulator

    start = T0 - timedelta(days=SYNCED_DAYS)
    with running_emulator(
        seed=29,
        clock=T0,
        timeline_start=start - timedelta(days=1),
        timeline_end=T0 + timedelta(days=1),
        events_per_day=60,
        page_size=400,
    ) as emu:
        emu.add_events(
            hostile_dataset_events(T0 - timedelta(days=3)), visible_at=T0 - timedelta(hours=1)
        )
        sync_days(emu, root, start)
    yield root
