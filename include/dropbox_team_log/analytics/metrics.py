"""The report's numbers: SQL over the analyst views, for the period and the one before.

Every number of the report is one of these statements, so the page, the terminal tables,
`dropbox-team-log query` and docs/querying.md always agree. Each statement filters on the
partition column (`{p}`), so only the period's day files are read.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb

from dropbox_team_log.analytics.charts import report_charts
from dropbox_team_log.analytics.period import Period
from dropbox_team_log.analytics.report_data import Metric, ReportData, Table

#: `{p}` in the SQL below: the filter on the partition column (only the period's files are read).
PERIOD_FILTER = "event_date BETWEEN $start AND $end"

#: (name, label, SQL over the views) of the headline numbers, each counted in both periods.
METRICS = (
    ("events", "Events", "SELECT count(*) FROM events WHERE {p}"),
    (
        "unauthenticated_access",
        "Opened without signing in",
        "SELECT count(*) FROM unauthenticated_access WHERE {p}",
    ),
    (
        "unauthenticated_ips",
        "IP addresses without signing in",
        "SELECT count(DISTINCT ip_address) FROM unauthenticated_access WHERE {p}",
    ),
    (
        "unauthenticated_countries",
        "Countries without signing in",
        "SELECT count(DISTINCT country) FROM unauthenticated_access WHERE {p}",
    ),
    (
        "external_sharing",
        "External sharing events",
        "SELECT count(*) FROM external_sharing WHERE {p}",
    ),
    (
        "external_parties",
        "Outside people involved",
        "SELECT count(DISTINCT x) FROM (SELECT unnest(external_parties) AS x "
        "FROM external_sharing WHERE {p})",
    ),
    (
        "sign_in_failures",
        "Sign-in failures",
        "SELECT count(*) FROM sign_ins WHERE outcome = 'failure' AND {p}",
    ),
    (
        "sign_in_successes",
        "Successful sign-ins",
        "SELECT count(*) FROM sign_ins WHERE outcome = 'success' AND {p}",
    ),
    (
        "admin_actions",
        "Admin actions",
        "SELECT count(*) FROM admin_actions WHERE {p}",
    ),
)

#: What is new this period: (label, SQL of distinct values over the views).
NEWS = (
    (
        "countries opening links without signing in",
        "SELECT DISTINCT country FROM unauthenticated_access WHERE country IS NOT NULL AND {p}",
    ),
    (
        "outside people in sharing",
        "SELECT DISTINCT unnest(external_parties) FROM external_sharing WHERE {p}",
    ),
    (
        "admins acting",
        "SELECT DISTINCT admin_email FROM admin_actions WHERE admin_email IS NOT NULL AND {p}",
    ),
)

#: The tables: (name, title, SQL over the views for the report period).
TABLES = (
    (
        "top_unauthenticated_files",
        "Files and folders opened without signing in",
        """SELECT asset_path AS path, count(*) AS opens, count(DISTINCT ip_address) AS ips,
                  string_agg(DISTINCT country, ', ' ORDER BY country) AS countries,
                  max(timestamp) AS last_opened
           FROM unauthenticated_access WHERE asset_path IS NOT NULL AND {p}
           GROUP BY asset_path ORDER BY opens DESC, path LIMIT 10""",
    ),
    (
        "top_unauthenticated_links",
        "Shared links opened without signing in",
        """SELECT shared_link AS link, any_value(asset_name ORDER BY asset_name) AS file,
                  count(*) AS opens, count(DISTINCT ip_address) AS ips,
                  string_agg(DISTINCT country, ', ' ORDER BY country) AS countries
           FROM unauthenticated_access WHERE shared_link IS NOT NULL AND {p}
           GROUP BY shared_link ORDER BY opens DESC, link LIMIT 10""",
    ),
    (
        "unauthenticated_countries",
        "Countries opening shared content without signing in",
        """SELECT coalesce(country, '(unknown)') AS country, count(*) AS opens,
                  count(DISTINCT ip_address) AS ips
           FROM unauthenticated_access WHERE {p}
           GROUP BY 1 ORDER BY opens DESC, country""",
    ),
    (
        "unauthenticated_ips",
        "IP addresses opening shared content without signing in",
        """SELECT ip_address AS ip, any_value(country ORDER BY country) AS country,
                  count(*) AS opens, count(DISTINCT asset_path) AS files,
                  max(timestamp) AS last_seen
           FROM unauthenticated_access WHERE ip_address IS NOT NULL AND {p}
           GROUP BY ip_address ORDER BY opens DESC, ip LIMIT 10""",
    ),
    (
        "sign_in_failures_by_user",
        "Sign-in failures by user",
        """SELECT coalesce(user_email, '(unknown)') AS user, count(*) AS failures,
                  count(DISTINCT country) AS countries, count(DISTINCT ip_address) AS ips,
                  any_value(error_message ORDER BY error_message) AS example_reason
           FROM sign_ins WHERE outcome = 'failure' AND {p}
           GROUP BY 1 ORDER BY failures DESC, user LIMIT 10""",
    ),
    (
        "admin_actions_by_admin",
        "Admin actions by admin",
        """SELECT coalesce(admin_email, '(' || actor_type || ')', '(unknown)') AS admin,
                  count(*) AS actions, count(DISTINCT event_type) AS action_types,
                  max(timestamp) AS last_action
           FROM admin_actions WHERE {p}
           GROUP BY 1 ORDER BY actions DESC, admin LIMIT 10""",
    ),
)

#: Per-day series behind the time charts: (name, SQL -> (event_date, series, count)).
SERIES = {
    "events_by_auth_status": """SELECT event_date, auth_status, count(*) FROM events WHERE {p}
                                GROUP BY ALL ORDER BY ALL""",
    "unauthenticated_per_day": """SELECT event_date, event_type, count(*)
                                  FROM unauthenticated_access WHERE {p}
                                  GROUP BY ALL ORDER BY ALL""",
    "sign_in_failures_per_day": """SELECT event_date, coalesce(error_message, event_type),
                                          count(*)
                                   FROM sign_ins WHERE outcome = 'failure' AND {p}
                                   GROUP BY ALL ORDER BY ALL""",
    "admin_actions_per_day": """SELECT event_date, event_category, count(*)
                                FROM admin_actions WHERE {p}
                                GROUP BY ALL ORDER BY ALL""",
}


def _params(period: Period) -> dict[str, date]:
    """The parameters of PERIOD_FILTER."""
    return {"start": period.start, "end": period.end}


def _rows(
    con: duckdb.DuckDBPyConnection, sql: str, period: Period
) -> tuple[list[str], list[tuple]]:
    """The column names and rows of `sql` over `period`."""
    result = con.execute(sql.replace("{p}", PERIOD_FILTER), _params(period))
    columns = [d[0] for d in result.description]
    return columns, result.fetchall()


def collect(con: duckdb.DuckDBPyConnection, root: str, period: Period) -> ReportData:
    """Every number and chart of the report, from the views on `con`."""
    previous = period.previous()
    latest = con.execute("SELECT max(timestamp) FROM events").fetchall()[0][0]
    data = ReportData(
        root=str(root),
        period=period,
        previous=previous,
        generated_at=datetime.now(UTC).replace(microsecond=0),
        latest_event=latest,
    )
    for name, label, sql in METRICS:
        current = _rows(con, sql, period)[1][0][0]
        before = _rows(con, sql, previous)[1][0][0]
        data.metrics.append(Metric(name, label, int(current or 0), int(before or 0)))
    for label, sql in NEWS:
        now_values = {r[0] for r in _rows(con, sql, period)[1]} - {None}
        old_values = {r[0] for r in _rows(con, sql, previous)[1]} - {None}
        fresh = sorted(now_values - old_values)
        if fresh and old_values:
            more = f" and {len(fresh) - 8} more" if len(fresh) > 8 else ""
            data.news.append(f"New {label}: {', '.join(fresh[:8])}{more}.")
    for name, title, sql in TABLES:
        columns, rows = _rows(con, sql, period)
        data.tables.append(Table(name, title, columns, rows))
    series = {name: _rows(con, sql, period)[1] for name, sql in SERIES.items()}
    data.charts = report_charts(data, series)
    return data
