"""The HTML report, opened in a real headless browser (Debian's chromium): every chart drew its
data, and every number shown equals what the views answer. Also the terminal tables, hostile
file names, the period rules, and the report DAG run for real (dag.test). Event strings stay
data: markup in them creates no element (tables, tick labels, legends, hover labels) and their
control characters show as escapes, in the page, the terminal and the task log.
"""

from __future__ import annotations

import os
import subprocess
from datetime import date, timedelta
from pathlib import Path

import lxml.html
import pytest

from dropbox_team_log.analytics import report
from dropbox_team_log.analytics import views as query
from dropbox_team_log.analytics.html_page import render_html
from dropbox_team_log.analytics.period import Period, resolve_period
from dropbox_team_log.analytics.text import report_text
from dropbox_team_log.cli import main as cli
from dropbox_team_log.display import visible
from tests.helpers import hostile_data
from tests.helpers.analyst_data import HOSTILE_NAME, T0, emulator_dataset
from tests.helpers.hostile_data import HOSTILE, hostile_dataset
from tests.helpers.pipeline import DAGS_FOLDER

CHROMIUM = "/usr/bin/chromium"
END = (T0 - timedelta(days=1)).date()  # the last whole day in the dataset
DAYS = 14
START = END - timedelta(days=DAYS - 1)
PREV_START, PREV_END = START - timedelta(days=DAYS), START - timedelta(days=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    with emulator_dataset(tmp_path_factory.mktemp("report") / "dataset") as path:
        yield path


@pytest.fixture(scope="module")
def con(root):
    con = query.connect(str(root))
    yield con
    con.close()


@pytest.fixture(scope="module")
def written(root, tmp_path_factory):
    """The report written by the command, and what the command printed."""
    out = tmp_path_factory.mktemp("out") / "report.html"
    argv = ["report", "--root", str(root), "--end", END.isoformat(), "--days", str(DAYS)]
    result = subprocess.run(
        ["dropbox-team-log", *argv, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp}",
            "--virtual-time-budget=20000",
            *args,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def dom(written, tmp_path_factory):
    """The page's DOM after plotly.js ran, as the browser built it."""
    out, _ = written
    result = chromium("--dump-dom", out.as_uri(), tmp=tmp_path_factory.mktemp("chromium"))
    assert result.returncode == 0, result.stderr[-2000:]
    return lxml.html.fromstring(result.stdout)


def has_class(name: str) -> str:
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


def scalar(con, sql: str, start: date = START, end: date = END):
    return con.execute(sql, {"start": start, "end": end}).fetchall()[0][0]


IN_PERIOD = " event_date BETWEEN $start AND $end "
#: How many bars each chart must draw: distinct (x, series) pairs, per the views.
EXPECTED_POINTS = {
    "events_by_auth_status": "SELECT count(DISTINCT (event_date, auth_status)) FROM events WHERE",
    "unauthenticated_per_day": "SELECT count(DISTINCT (event_date, event_type)) "
    "FROM unauthenticated_access WHERE",
    "top_unauthenticated_files": "SELECT least(10, count(DISTINCT asset_path)) "
    "FROM unauthenticated_access WHERE",
    "top_unauthenticated_links": "SELECT least(10, count(DISTINCT shared_link)) "
    "FROM unauthenticated_access WHERE",
    "unauthenticated_countries": "SELECT count(DISTINCT coalesce(country, '?')) "
    "FROM unauthenticated_access WHERE",
    "unauthenticated_ips": "SELECT least(10, count(DISTINCT ip_address)) "
    "FROM unauthenticated_access WHERE",
    "sign_in_failures_per_day": "SELECT count(DISTINCT (event_date, "
    "coalesce(error_message, event_type))) FROM sign_ins WHERE outcome = 'failure' AND",
    "admin_actions_per_day": "SELECT count(DISTINCT (event_date, event_category)) "
    "FROM admin_actions WHERE",
}


def test_every_chart_rendered_its_data_in_the_browser(dom, con):
    sections = {s.get("data-chart"): s for s in dom.xpath("//section[@data-chart]")}
    assert set(sections) == set(EXPECTED_POINTS)
    for name, sql in EXPECTED_POINTS.items():
        section = sections[name]
        assert section.xpath(f".//svg[{has_class('main-svg')}]"), f"{name}: plotly did not draw"
        bars = section.xpath(f".//g[{has_class('trace')}]//g[{has_class('point')}]/path")
        drawn = [b for b in bars if b.get("d") and b.get("d") != "M0,0Z"]
        want = scalar(con, sql + IN_PERIOD)
        assert want > 0, f"{name}: no data to draw in the test period"
        assert len(drawn) == want, f"{name}: {len(drawn)} bars drawn, the views say {want}"


METRIC_SQL = {
    "events": "SELECT count(*) FROM events WHERE",
    "unauthenticated_access": "SELECT count(*) FROM unauthenticated_access WHERE",
    "unauthenticated_ips": "SELECT count(DISTINCT ip_address) FROM unauthenticated_access WHERE",
    "unauthenticated_countries": "SELECT count(DISTINCT country) FROM unauthenticated_access WHERE",
    "external_sharing": "SELECT count(*) FROM external_sharing WHERE",
    "external_parties": "SELECT count(DISTINCT p) FROM (SELECT unnest(external_parties) AS p, "
    "event_date FROM external_sharing) WHERE",
    "sign_in_failures": "SELECT count(*) FROM sign_ins WHERE outcome = 'failure' AND",
    "sign_in_successes": "SELECT count(*) FROM sign_ins WHERE outcome = 'success' AND",
    "admin_actions": "SELECT count(*) FROM admin_actions WHERE",
}


def test_numbers_shown_match_the_views(dom, con):
    rows = {tr.get("data-metric"): tr for tr in dom.xpath("//tr[@data-metric]")}
    assert set(rows) == set(METRIC_SQL)
    for name, sql in METRIC_SQL.items():
        current = rows[name].xpath("./td[@data-value='current']")[0].text_content().strip()
        previous = rows[name].xpath("./td[@data-value='previous']")[0].text_content().strip()
        assert int(current) == scalar(con, sql + IN_PERIOD), name
        assert int(previous) == scalar(con, sql + IN_PERIOD, PREV_START, PREV_END), name
    assert scalar(con, METRIC_SQL["events"] + IN_PERIOD, PREV_START, PREV_END) > 0

    files = [
        tuple(td.text_content() for td in tr.xpath("./td"))
        for tr in dom.xpath("//table[@data-table='top_unauthenticated_files']//tr[td]")
    ]
    want = con.execute(
        "SELECT asset_path, count(*) AS n FROM unauthenticated_access "
        "WHERE event_date BETWEEN $start AND $end AND asset_path IS NOT NULL "
        "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10",
        {"start": START, "end": END},
    ).fetchall()
    assert [(f[0], int(f[1])) for f in files] == want
    countries = [
        (tr.xpath("./td")[0].text_content(), int(tr.xpath("./td")[1].text_content()))
        for tr in dom.xpath("//table[@data-table='unauthenticated_countries']//tr[td]")
    ]
    assert (
        countries
        == con.execute(
            "SELECT coalesce(country, '(unknown)'), count(*) AS n FROM unauthenticated_access "
            "WHERE event_date BETWEEN $start AND $end GROUP BY 1 ORDER BY n DESC, 1",
            {"start": START, "end": END},
        ).fetchall()
    )
    period = dom.xpath("//*[@id='period']")[0]
    assert (period.get("data-start"), period.get("data-end")) == (
        START.isoformat(),
        END.isoformat(),
    )


def test_hostile_file_names_stay_text(dom, written):
    assert not dom.xpath("//img"), "a file name became markup"
    assert dom.xpath("//title")[0].text_content() != "pwned"
    cells = [td.text_content() for td in dom.xpath("//table[@data-table]//td")]
    assert f"/Shared/{HOSTILE_NAME}" in cells
    ticks = " ".join(t.text_content() for t in dom.xpath("//g[contains(@class, 'ytick')]//text"))
    assert "onerror" in ticks, "the hostile name should show, as text, in the top-files chart"


def test_terminal_shows_the_key_tables(written, con):
    out, stdout = written
    assert f"Report written: {out}" in stdout
    for title in ("Files and folders opened without signing in", "Sign-in failures by user"):
        assert title in stdout
    failures = scalar(con, METRIC_SQL["sign_in_failures"] + IN_PERIOD)
    assert any(
        line.split()[:2] == ["Sign-in", "failures"] and str(failures) in line.split()
        for line in stdout.splitlines()
    )


def test_screenshot_shows_the_page(written, tmp_path):
    out, _ = written
    shot = Path(os.environ.get("DTL_REPORT_SCREENSHOT", tmp_path / "report.png"))
    result = chromium(
        f"--screenshot={shot}", "--window-size=1400,2400", out.as_uri(), tmp=tmp_path / "profile"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000


def test_the_report_works_offline(tmp_path):
    """plotly.js is inline: no script or stylesheet is fetched from anywhere (empty dataset)."""
    data = report.build(str(tmp_path), Period(START, END))
    doc = lxml.html.fromstring(render_html(data))
    assert not doc.xpath("//script[@src] | //link[@href]")
    assert "Plotly" in "".join(doc.xpath("//script/text()"))
    assert len(doc.xpath("//p[@class='nodata']")) == len(EXPECTED_POINTS)


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        ({}, (date(2026, 10, 23), date(2026, 11, 21))),
        ({"days": 7}, (date(2026, 11, 15), date(2026, 11, 21))),
        ({"end": date(2026, 1, 31)}, (date(2026, 1, 2), date(2026, 1, 31))),
        ({"start": date(2026, 1, 1), "days": 10}, (date(2026, 1, 1), date(2026, 1, 10))),
        ({"start": date(2026, 11, 1)}, (date(2026, 11, 1), date(2026, 11, 21))),
    ],
)
def test_period_rules(kwargs, want):
    period = resolve_period(**kwargs, today=date(2026, 11, 21))
    assert (period.start, period.end) == want
    assert period.previous().end == period.start - timedelta(days=1)
    assert period.previous().days == period.days


def test_bad_periods_are_refused(root, capsys):
    with pytest.raises(ValueError):
        resolve_period(date(2026, 2, 1), date(2026, 1, 1))
    assert cli.main(["report", "--root", str(root), "--days", "0"]) == 2
    assert "--days" in capsys.readouterr().err


def test_report_dag_writes_beside_the_data(root, airflow_db, tmp_path, monkeypatch):
    """The third DAG, run for real: the report lands in <root>/_reports/, for the run's day."""
    import shutil

    from airflow.dag_processing.dagbag import DagBag

    data = tmp_path / "dataset"
    shutil.copytree(root, data)
    monkeypatch.setenv("AIRFLOW_VAR_DROPBOX_TEAM_LOG_OUTPUT", str(data))
    dag = DagBag(dag_folder=DAGS_FOLDER).dags["dropbox_team_log_report"]
    run = dag.test(logical_date=T0, run_conf={"days": 7})
    assert run.state == "success"
    page = data / "_reports" / "dropbox_team_log_report.html"
    doc = lxml.html.fromstring(page.read_bytes())
    period = doc.xpath("//*[@id='period']")[0]
    assert period.get("data-end") == T0.date().isoformat()
    assert period.get("data-start") == (T0.date() - timedelta(days=6)).isoformat()
    assert oct(page.stat().st_mode & 0o777) == "0o640"


# --- event strings stay data -------------------------------------------------------------------

#: Hovers every bar of every chart in turn (Plotly handles one hover per 50 ms) and keeps a copy
#: of each hover label under #hover-capture, so the dumped DOM holds what a mouse would show.
HOVER_EVERY_BAR = """<script>
const pause = (ms) => new Promise((done) => setTimeout(done, ms));
window.addEventListener("load", async () => {
  await pause(200);
  const sink = document.createElement("div");
  for (const gd of document.querySelectorAll(".js-plotly-plot")) {
    for (const [curveNumber, trace] of gd.data.entries()) {
      for (let pointNumber = 0; pointNumber < trace.x.length; pointNumber++) {
        Plotly.Fx.hover(gd, [{curveNumber, pointNumber}]);
        await pause(60);
        const box = document.createElement("div");
        box.className = "hover";
        box.dataset.chart = gd.closest("section").dataset.chart;
        box.appendChild(gd.querySelector(".hoverlayer").cloneNode(true));
        sink.appendChild(box);
      }
    }
  }
  sink.id = "hover-capture";
  document.body.appendChild(sink);
});
</script>
"""
HOSTILE_END = (T0 - timedelta(days=1)).date()


@pytest.fixture(scope="module")
def hostile_written(tmp_path_factory):
    """The report of a dataset whose every shown string is hostile, and what the command printed."""
    root = tmp_path_factory.mktemp("hostile") / "dataset"
    out = tmp_path_factory.mktemp("hostile_out") / "report.html"
    with hostile_dataset(root):
        period = ["--end", HOSTILE_END.isoformat(), "--days", str(hostile_data.REPORT_DAYS)]
        result = subprocess.run(
            ["dropbox-team-log", "report", "--root", str(root), "--out", str(out), *period],
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return root, out, result.stdout.decode()


@pytest.fixture(scope="module")
def hostile_dom(hostile_written, tmp_path_factory):
    """The hostile report's DOM after plotly.js drew it and every bar was hovered."""
    _, out, _ = hostile_written
    page = tmp_path_factory.mktemp("hovered") / "report.html"
    page.write_text(out.read_text().replace("</body>", HOVER_EVERY_BAR + "</body>"))
    result = chromium(
        "--dump-dom",
        page.as_uri(),
        tmp=tmp_path_factory.mktemp("chromium_hostile"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = lxml.html.fromstring(result.stdout)
    assert dom.xpath("//div[@id='hover-capture']/div"), "the hover script did not run"
    return dom


def texts(nodes) -> list[str]:
    return [node.text_content() for node in nodes]


def dom_title(dom) -> str:
    return dom.xpath("//title")[0].text_content()


def test_event_markup_creates_no_element_in_the_browser(hostile_dom):
    """Links, bold, breaks, spans, images and scripts named by events stay characters."""
    assert dom_title(hostile_dom) != "pwned"
    assert not hostile_dom.xpath("//a | //b | //i | //img | //span | //svg//br")
    assert not hostile_dom.xpath("//svg//tspan[@style]"), "event markup became styled text"
    # Plotly keeps each label's source text in `data-unformatted`: text, never a link or style.
    live = [
        (element.tag, name)
        for element in hostile_dom.iter()
        for name, value in element.attrib.items()
        if name != "data-unformatted" and ("evil.example" in value or "80px" in value)
    ]
    assert not live, f"event markup became attributes: {live}"
    charts = hostile_dom.xpath("//section[@data-chart]//div[contains(@class, 'plotly-graph-div')]")
    assert len(hostile_dom.xpath("//script")) == 1 + len(charts) + 1  # plotly.js, charts, hover


#: Where each hostile field shows: (chart, the part of the chart) or (table, column).
CHART_PLACES = {
    "asset_path": "top_unauthenticated_files",
    "shared_link": "top_unauthenticated_links",
    "country": "unauthenticated_countries",
    "ip_address": "unauthenticated_ips",
}
LEGEND_PLACES = {
    "anonymous_event_type": "unauthenticated_per_day",
    "error_message": "sign_in_failures_per_day",
    "admin_event_category": "admin_actions_per_day",
}
TABLE_PLACES = {
    ("top_unauthenticated_files", "asset_path"),
    ("top_unauthenticated_links", "shared_link"),
    ("top_unauthenticated_links", "asset_name"),
    ("unauthenticated_countries", "country"),
    ("unauthenticated_ips", "ip_address"),
    ("sign_in_failures_by_user", "admin_email"),
    ("sign_in_failures_by_user", "error_message"),
    ("admin_actions_by_admin", "admin_email"),
}


def chart(dom, name: str):
    return dom.xpath(f"//section[@data-chart='{name}']")[0]


def test_event_strings_show_literally_in_charts_tables_and_hovers(hostile_dom):
    for field, name in CHART_PLACES.items():
        shown = visible(HOSTILE[field])
        ticks = texts(chart(hostile_dom, name).xpath(f".//g[{has_class('ytick')}]//text"))
        markup = next(m for m in hostile_data.MARKUP if HOSTILE[field].endswith(m))
        assert any(t.startswith("...") and t.endswith(markup) for t in ticks), (field, ticks)
        hovers = texts(hostile_dom.xpath(f"//div[@class='hover'][@data-chart='{name}']"))
        assert any(shown in h for h in hovers), (field, hovers)
    for field, name in LEGEND_PLACES.items():
        legend = texts(chart(hostile_dom, name).xpath(f".//*[{has_class('legendtext')}]"))
        assert visible(HOSTILE[field]) in legend, (field, legend)
    for table, field in TABLE_PLACES:
        cells = texts(hostile_dom.xpath(f"//table[@data-table='{table}']//td"))
        assert visible(HOSTILE[field]) in cells, (table, field)
    news = " ".join(texts(hostile_dom.xpath("//ul[@class='summary']/li")))
    assert f"New admins acting: {visible(HOSTILE['admin_email'])}." in news


def test_no_raw_control_character_reaches_the_page(hostile_dom):
    shown = texts(
        hostile_dom.xpath(
            "//td | //ul[@class='summary']/li | //svg//text | //div[@id='hover-capture']"
        )
    )
    raw = [(c, s[:60]) for s in shown for c in hostile_data.STEERING if c in s]
    assert not raw, raw


def test_report_command_prints_no_terminal_control(hostile_written):
    _, _, stdout = hostile_written
    steering = [c for c in hostile_data.STEERING if c != "\n" and c in stdout]
    assert not steering, f"raw control characters in the terminal output: {steering}"
    assert not [line for line in stdout.splitlines() if line.lstrip().startswith("forged")]
    assert visible(HOSTILE["admin_email"])[:60] in stdout


def test_report_dag_log_shows_event_strings_visibly(hostile_written):
    """The report task logs `report_text` of the data it renders: the same escaping."""
    root, _, _ = hostile_written
    period = Period(HOSTILE_END - timedelta(days=hostile_data.REPORT_DAYS - 1), HOSTILE_END)
    logged = report_text(report.build(str(root), period))
    assert not [c for c in hostile_data.STEERING if c != "\n" and c in logged]
    assert not [line for line in logged.splitlines() if line.lstrip().startswith("forged")]
    assert visible(HOSTILE["country"]) in logged
