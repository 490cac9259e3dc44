"""Each detection raises its crafted positive and stays quiet on the near miss beside it.

The crafted events go into the emulator through its control API (emulator/scenarios.py), next to
generated background activity, and reach the dataset through the real sync (HTTP, SDK, Parquet);
the detections run as DuckDB views over it. Crafted people exist only in the crafted events, so a
finding about them is exactly one the crafted events should (or should not) raise.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from dropbox_team_log.analytics import detections, views
from dropbox_team_log.analytics.detections import DetectionConfig, DetectionConfigError
from dropbox_team_log.analytics.findings import evaluate
from tests.helpers.detection_data import T0, epoch, sync, team_emulator

DAY = T0.replace(hour=0, minute=0, second=0) - timedelta(days=4)
CONFIG = DetectionConfig().override(
    {
        "allowed_share_domains": ["partner.example"],
        "trusted_owner_domains": ["subsidiary.example"],
        "allowed_countries": ["IE"],
    }
)


def at(hour: int, minute: int = 0, days: int = 0) -> int:
    return epoch(DAY + timedelta(days=days, hours=hour, minutes=minute))


def crafted_events(s) -> list[dict]:
    """Positives and near misses, each with people of its own."""
    ada = s.member("Ada Admin", admin=True)
    events = []
    # admin sign-in-as: a session start (positive), a session end alone (near miss)
    events += s.sign_in_as(at(1), ada, s.member("Sam Target"))
    end = s.event(
        "sign_in_as_session_end",
        at(1, 30),
        actor=ada.admin_actor,
        context=s.member("Nia Target").context,
    )
    events.append(end)
    # 2FA: turned off (positive); off -> off and sms -> authenticator (near misses)
    events += s.tfa_change(at(2), s.member("Tom Tfa"), "authenticator", "disabled")
    events += s.tfa_change(at(2, 5), s.member("Una Tfa"), "disabled", "disabled")
    events += s.tfa_change(at(2, 10), s.member("Vic Tfa"), "sms", "authenticator")
    # apps: a team-linked app with an outsider involved (positive, high); an allowlisted one and
    # a member-linked one (near misses)
    events += s.app_link_team(at(3), ada, "Shady Sync", involve_non_team_member=True)
    events += s.app_link_team(at(3, 5), ada, "Known Backup")
    app = {".tag": "user_linked_app", "app_id": "dbaid:AAuser", "display_name": "Personal App"}
    wes = s.member("Wes Apps")
    events.append(s.event("app_link_user", at(3, 10), details={"app_info": app}, actor=wes.actor))
    # ownership: to another domain (high), to a trusted domain (medium); an account-contents
    # transfer is no ownership transfer (near miss)
    olga = s.member("Olga Owner")
    events += s.ownership_transfer(at(4), olga, "/Legal/Deals", olga.email, "eve@rival.example")
    events += s.ownership_transfer(
        at(4, 5), olga, "/Legal/Group", olga.email, "kim@subsidiary.example"
    )
    events.append(
        s.event("member_transfer_account_contents", at(4, 10), actor=olga.admin_actor or olga.actor)
    )
    # external share: to an outsider (positive); to an allowlisted domain, a trusted team's
    # member, a team member (near misses)
    pat = s.member("Pat Sharer")
    events += s.share(at(5), pat, "/Sales/Prices.xlsx", [s.outsider("mallory@rival.example")])
    events += s.share(at(5, 5), pat, "/Sales/Deck.pptx", [s.outsider("li@partner.example")])
    trusted = s.outsider("ari@friendly.example", trusted=True)
    events += s.share(at(5, 10), pat, "/Sales/Plan.docx", [trusted])
    events += s.share(at(5, 15), pat, "/Sales/Notes.docx", [s.member("Ray Colleague")])
    # mass download: 50 distinct files in an hour (positive); 49 files, one of them 30 times
    # more (near miss: files count, not events)
    events += s.file_burst(at(6), s.member("Dan Download"), "file_download", 50)
    near = s.file_burst(at(6), s.member("Dee Download"), "file_download", 49)
    events += near + [dict(near[0], timestamp=near[-1]["timestamp"]) for _ in range(30)]
    # mass delete: 50 (positive, split over both delete types); 49 (near miss)
    gone = s.file_burst(at(7), s.member("Del Delete"), "file_delete", 25, folder="/A")
    gone += s.file_burst(at(7, 5), s.member("Del Delete"), "file_permanently_delete", 25)
    events += gone
    events += s.file_burst(at(7), s.member("Dot Delete"), "file_delete", 49)
    # anonymous link burst: 10 IPs (positive), 5 countries (positive); 9 IPs in 4 countries
    # (near miss)
    owner = s.member("Lin Links")
    ten_ips = [("US", f"192.0.2.{i}") for i in range(100, 110)]
    events += s.anonymous_views(at(8), "/Public/Leaked.pdf", owner, ten_ips)
    five = [(c, f"198.51.100.{i}") for i, c in enumerate(["US", "GB", "DE", "FR", "JP"])]
    events += s.anonymous_views(at(8), "/Public/Spread.pdf", owner, five)
    nine = [(["US", "GB", "DE", "FR"][i % 4], f"203.0.113.{i}") for i in range(9)]
    events += s.anonymous_views(at(8), "/Public/Quiet.pdf", owner, nine)
    # brute force: 10 failures then a success (high); 10 failures (medium); 9 (near miss)
    bob = s.member("Bob Brute")
    events += s.sign_ins(at(9), bob, ["RU"] * 10, failed=True, step=20)
    events += s.sign_ins(at(9, 10), bob, ["RU"])
    events += s.sign_ins(at(9), s.member("Cat Brute"), ["BR"] * 10, failed=True, step=20)
    events += s.sign_ins(at(9), s.member("Dina Brute"), ["BR"] * 9, failed=True, step=20)
    # new country: GB, GB, GB then BR (positive); GB x4 (near miss), BR with no history (near
    # miss), GB x3 then IE, allowlisted (near miss)
    for name, last in [("Nora Travel", "BR"), ("Omar Home", "GB"), ("Quinn Near", "IE")]:
        person = s.member(name)
        for day in (-3, -2, -1):
            events += s.sign_ins(at(10, days=day), person, ["GB"])
        events += s.sign_ins(at(10), person, [last])
    events += s.sign_ins(at(10), s.member("Pia Fresh"), ["BR"])
    return events


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from dropbox_emulator.scenarios import Scenarios

    path = tmp_path_factory.mktemp("detections") / "dataset"
    with team_emulator() as emu:
        emu.add_events(crafted_events(Scenarios(emu.config)))
        sync(emu, path, T0 - timedelta(days=12), T0)
    return path


@pytest.fixture(scope="module")
def rows(root):
    return evaluate(str(root), CONFIG).rows


def found(rows, detection: str, **fields) -> list[dict]:
    return [
        r for r in rows if r["detection"] == detection and all(r[k] == v for k, v in fields.items())
    ]


def about(rows, detection: str, text: str) -> list[dict]:
    """Findings of `detection` whose actor, asset or evidence mentions `text`."""
    return [
        r
        for r in rows
        if r["detection"] == detection
        and any(text in (r[k] or "") for k in ("actor", "asset", "evidence"))
    ]


def email(name: str) -> str:
    first, last = name.lower().split()
    return f"{first}.{last}@northwind-research.example"


def test_every_view_has_the_finding_shape(root):
    con = views.connect(str(root))
    detections.register(con, CONFIG)
    for detection in detections.DETECTIONS:
        columns = con.table(detection.name).columns
        assert tuple(columns) == detections.FINDING_COLUMNS, detection.name
    con.close()


def test_admin_sign_in_as(rows):
    (hit,) = found(rows, "detect_admin_sign_in_as", asset=email("Sam Target"))
    assert hit["actor"] == email("Ada Admin") and hit["events"] == 1
    assert hit["severity"] == "medium" and hit["technique"] == "T1078.004"
    assert not about(rows, "detect_admin_sign_in_as", email("Nia Target"))


def test_tfa_disabled(rows):
    (hit,) = found(rows, "detect_tfa_disabled", asset=email("Tom Tfa"))
    assert json.loads(hit["evidence"])["previous_value"] == "authenticator"
    assert not about(rows, "detect_tfa_disabled", email("Una Tfa"))
    assert not about(rows, "detect_tfa_disabled", email("Vic Tfa"))


def test_app_linked(root):
    from dropbox_emulator.scenarios import app_id

    cfg = CONFIG.override({"allowed_app_ids": [app_id("Known Backup")]})
    rows = evaluate(str(root), cfg).rows
    (hit,) = found(rows, "detect_app_linked", asset="Shady Sync")
    assert hit["severity"] == "high" and hit["actor"] == email("Ada Admin")
    assert not found(rows, "detect_app_linked", asset="Known Backup")
    assert not found(rows, "detect_app_linked", asset="Personal App")
    # Without the allowlist the known app is reported too (medium: no outsider took part).
    (known,) = found(evaluate(str(root), CONFIG).rows, "detect_app_linked", asset="Known Backup")
    assert known["severity"] == "medium"


def test_ownership_transfer(rows):
    (out,) = found(rows, "detect_ownership_transfer", asset="/Legal/Deals")
    assert out["severity"] == "high" and json.loads(out["evidence"])["new_owner"] == (
        "eve@rival.example"
    )
    (trusted,) = found(rows, "detect_ownership_transfer", asset="/Legal/Group")
    assert trusted["severity"] == "medium"
    assert len(about(rows, "detect_ownership_transfer", email("Olga Owner"))) == 2


def test_external_share(rows):
    (hit,) = about(rows, "detect_external_share", email("Pat Sharer"))
    assert hit["asset"] == "/Sales/Prices.xlsx"
    assert json.loads(hit["evidence"])["recipients"] == ["mallory@rival.example"]


def test_mass_download(rows):
    (hit,) = found(rows, "detect_mass_download", actor=email("Dan Download"))
    assert hit["events"] == 50 and json.loads(hit["evidence"])["files"] == 50
    assert hit["asset"] == "50 files"
    assert not found(rows, "detect_mass_download", actor=email("Dee Download"))


def test_mass_delete(rows):
    (hit,) = found(rows, "detect_mass_delete", actor=email("Del Delete"))
    assert hit["events"] == 50 and hit["severity"] == "high"
    evidence = json.loads(hit["evidence"])
    assert evidence["event_types"] == ["file_delete", "file_permanently_delete"]
    assert not found(rows, "detect_mass_delete", actor=email("Dot Delete"))


def test_anonymous_link_burst(rows):
    (ips,) = found(rows, "detect_anonymous_link_burst", asset="/Public/Leaked.pdf")
    assert json.loads(ips["evidence"])["ip_count"] == 10 and ips["actor"] == "anonymous"
    (countries,) = found(rows, "detect_anonymous_link_burst", asset="/Public/Spread.pdf")
    assert json.loads(countries["evidence"])["countries"] == ["DE", "FR", "GB", "JP", "US"]
    assert not found(rows, "detect_anonymous_link_burst", asset="/Public/Quiet.pdf")


def test_login_brute_force(rows):
    (bob,) = found(rows, "detect_login_brute_force", actor=email("Bob Brute"))
    assert bob["severity"] == "high" and bob["events"] == 10
    assert json.loads(bob["evidence"])["signed_in_after"] is not None
    (cat,) = found(rows, "detect_login_brute_force", actor=email("Cat Brute"))
    assert cat["severity"] == "medium"
    assert not found(rows, "detect_login_brute_force", actor=email("Dina Brute"))


def test_new_country_sign_in(rows):
    (hit,) = found(rows, "detect_new_country_sign_in", actor=email("Nora Travel"))
    assert hit["asset"] == "BR"
    assert json.loads(hit["evidence"])["usual_countries"] == ["GB"]
    for name in ("Omar Home", "Quinn Near", "Pia Fresh"):
        assert not found(rows, "detect_new_country_sign_in", actor=email(name)), name


def test_same_evidence_same_finding_id(root, rows):
    again = evaluate(str(root), CONFIG).rows
    assert [r["finding_id"] for r in again] == [r["finding_id"] for r in rows]
    assert len({r["finding_id"] for r in rows}) == len(rows)


def test_knobs_are_checked_and_named():
    assert DetectionConfig.from_json(None) == DetectionConfig()
    cfg = DetectionConfig.from_json('{"mass_delete_files": 7, "allowed_countries": "ie, gb"}')
    assert cfg.mass_delete_files == 7 and cfg.allowed_countries == ("IE", "GB")
    for text, word in [
        ("{not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"mass_delete_file": 3}', "mass_delete_file"),
        ('{"mass_delete_files": 0}', "mass_delete_files"),
        ('{"allowed_share_domains": [1]}', "allowed_share_domains"),
    ]:
        with pytest.raises(DetectionConfigError, match=word):
            DetectionConfig.from_json(text)
