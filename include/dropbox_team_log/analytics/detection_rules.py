"""The SQL of each detection, with what it finds, why, its ATT&CK technique, false positives.

Each function returns a SELECT over `detection_input` (analytics/detections.py defines it) with
the columns team_id, severity, first_seen, last_seen, actor, asset, events, evidence (a JSON
value) and dedup_key: the evidence keys, what makes two findings the same finding (the same
session, the same actor and window, the same link and window...). `detections.detection_sql`
turns dedup_key into the finding_id. Event types and field paths are those of Dropbox's spec
examples (the emulator's fixture, one example per event type).
"""

# ruff: file-ignore[hardcoded-sql-expression] (only checked numbers and quoted strings go in)

from __future__ import annotations

from collections.abc import Iterable

from dropbox_team_log.analytics.detection_config import DetectionConfig

#: The view every detection reads (detections.register defines it).
INPUT_VIEW = "detection_input"
DOWNLOAD_TYPES = ("file_download", "shared_content_download", "shared_link_download")
DELETE_TYPES = ("file_delete", "file_permanently_delete")
SHARE_TYPES = ("shared_content_add_member", "shared_content_add_invitees", "shared_link_share")
TRANSFER_TYPES = ("shared_folder_transfer_ownership", "paper_doc_ownership_changed")


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _strings(values: Iterable[str]) -> str:
    return "[" + ", ".join(sql_literal(v) for v in values) + "]::VARCHAR[]"


def sql_in(values: Iterable[str]) -> str:
    return "(" + ", ".join(sql_literal(v) for v in values) + ")"


def _key(*expressions: str) -> str:
    """The evidence keys as one text (fields apart by U+001F, a missing one as U+0000)."""
    parts = ", ".join(f"coalesce(CAST({e} AS VARCHAR), chr(0))" for e in expressions)
    return f"concat_ws(chr(31), {parts})"


def _iso(expression: str) -> str:
    return f"strftime({expression}, '%Y-%m-%dT%H:%M:%SZ')"


# --- the detections ------------------------------------------------------------------------------
# Each returns a SELECT with: team_id, severity, first_seen, last_seen, actor, asset, events,
# evidence (a JSON value) and dedup_key (the evidence keys: what makes two findings the same).


def admin_sign_in_as(cfg: DetectionConfig) -> str:
    """An admin started a sign-in-as session: they act in a member's account as that member.

    Why: full access to someone else's files and shares; abused, it reads or
    changes a member's data under their name. ATT&CK T1078.004 (Valid Accounts: Cloud
    Accounts). False positives: admins helping members (support, offboarding) do this on purpose;
    check the ticket. One finding per session start (admin, member, second).
    """
    return f"""
SELECT team_id, 'medium' AS severity, min(timestamp) AS first_seen, max(timestamp) AS last_seen,
       actor AS actor, context_email AS asset, count(*) AS events,
       json_object('admin', actor, 'member', context_email, 'ip_address', min(ip_address),
                   'country', min(country), 'access_method', min(access_method)) AS evidence,
       {_key("team_id", "actor", "context_email", "epoch(timestamp)")} AS dedup_key
FROM (SELECT *, coalesce(actor_email, actor_type) AS actor FROM {INPUT_VIEW}
      WHERE event_type = 'sign_in_as_session_start')
GROUP BY team_id, actor, context_email, timestamp
"""


def tfa_disabled(cfg: DetectionConfig) -> str:
    """Two-step verification turned off for an account (`tfa_change_status` to `disabled`).

    Why: an attacker holding a password removes the second factor to keep access. ATT&CK
    T1556.006 (Modify Authentication Process: Multi-Factor Authentication). False positives: a
    member replacing their phone, an admin resetting a locked-out member. A change from disabled
    to disabled is no change and is not reported.
    """
    return f"""
SELECT team_id, 'medium' AS severity, min(timestamp) AS first_seen, max(timestamp) AS last_seen,
       actor, account AS asset, count(*) AS events,
       json_object('account', account, 'previous_value', previous_value, 'new_value', 'disabled',
                   'used_rescue_code', min(used_rescue_code), 'ip_address', min(ip_address),
                   'country', min(country)) AS evidence,
       {_key("team_id", "account", "epoch(timestamp)")} AS dedup_key
FROM (SELECT *, coalesce(actor_email, actor_display_name, actor_type) AS actor,
             coalesce(context_email, actor_email) AS account,
             json_extract_string(details, '$.previous_value.".tag"') AS previous_value,
             json_extract_string(details, '$.used_rescue_code') AS used_rescue_code
      FROM {INPUT_VIEW}
      WHERE event_type = 'tfa_change_status'
        AND json_extract_string(details, '$.new_value.".tag"') = 'disabled')
WHERE coalesce(previous_value, '') <> 'disabled'
GROUP BY team_id, actor, account, previous_value, timestamp
"""


def app_linked(cfg: DetectionConfig) -> str:
    """A team-linked app was added (`app_link_team`): an app with access to the whole team.

    Why: a malicious or over-privileged app reads every member's files through the API (consent
    phishing). ATT&CK T1528 (Steal Application Access Token). High when an outsider took part.
    False positives: IT adding a known backup or compliance tool; allowlist its app id
    (`allowed_app_ids`).
    """
    return f"""
SELECT team_id,
       CASE WHEN bool_or(involve_non_team_member) THEN 'high' ELSE 'medium' END AS severity,
       min(timestamp) AS first_seen, max(timestamp) AS last_seen, actor,
       coalesce(app_name, app_id) AS asset, count(*) AS events,
       json_object('app_id', app_id, 'app_name', app_name, 'app_type', app_type,
                   'involve_non_team_member', bool_or(involve_non_team_member),
                   'ip_address', min(ip_address), 'country', min(country)) AS evidence,
       {_key("team_id", "app_id", "app_name", "epoch(timestamp)")} AS dedup_key
FROM (SELECT *, coalesce(actor_email, actor_display_name, actor_type) AS actor,
             json_extract_string(details, '$.app_info.app_id') AS app_id,
             json_extract_string(details, '$.app_info.display_name') AS app_name,
             json_extract_string(details, '$.app_info.".tag"') AS app_type
      FROM {INPUT_VIEW} WHERE event_type = 'app_link_team')
WHERE NOT list_contains({_strings(cfg.allowed_app_ids)}, coalesce(app_id, ''))
GROUP BY team_id, actor, app_id, app_name, app_type, timestamp
"""


def ownership_transfer(cfg: DetectionConfig) -> str:
    """Ownership of a shared folder or Paper doc moved to another account.

    Why: the new owner controls who keeps access and can remove the team's; a transfer to
    another domain moves the content out of the team's control. ATT&CK T1222 (File and
    Directory Permissions Modification). High when the new owner's domain is neither the
    actor's nor the previous owner's nor in `trusted_owner_domains`. False positives:
    reorganisations and offboarding hand folders over routinely.
    """
    return f"""
SELECT team_id,
       CASE WHEN new_domain IS NOT NULL
                 AND new_domain IS DISTINCT FROM lower(split_part(actor, '@', 2))
                 AND new_domain IS DISTINCT FROM lower(split_part(previous_owner, '@', 2))
                 AND NOT list_contains({_strings(cfg.trusted_owner_domains)}, new_domain)
            THEN 'high' ELSE 'medium' END AS severity,
       min(timestamp) AS first_seen, max(timestamp) AS last_seen, actor, asset,
       count(*) AS events,
       json_object('event_type', event_type, 'new_owner', new_owner,
                   'previous_owner', previous_owner, 'asset_id', min(asset_id),
                   'ip_address', min(ip_address), 'country', min(country)) AS evidence,
       {_key("team_id", "event_type", "asset", "new_owner", "epoch(timestamp)")} AS dedup_key
FROM (SELECT *, coalesce(actor_email, actor_display_name, actor_type) AS actor,
             coalesce(asset_path, asset_name, asset_id) AS asset,
             coalesce(json_extract_string(details, '$.new_owner_email'),
                      json_extract_string(details, '$.new_owner_user_id')) AS new_owner,
             coalesce(json_extract_string(details, '$.previous_owner_email'),
                      json_extract_string(details, '$.old_owner_user_id')) AS previous_owner,
             CASE WHEN contains(json_extract_string(details, '$.new_owner_email'), '@')
                  THEN lower(split_part(json_extract_string(details, '$.new_owner_email'),
                                        '@', 2)) END AS new_domain
      FROM {INPUT_VIEW} WHERE event_type IN {sql_in(TRANSFER_TYPES)})
GROUP BY team_id, event_type, actor, asset, new_owner, previous_owner, new_domain, timestamp
"""


def external_share(cfg: DetectionConfig) -> str:
    """A team member shared content with someone outside the team, on a domain not allowlisted.

    Recipients: participants Dropbox tags `non_team_member`, `external_users` of a link share
    and invitees, each on another domain than the actor's and not in `allowed_share_domains`
    (members of trusted teams are trusted by the team's own setting). Why: the usual path of
    data out of the company. ATT&CK T1537 (Transfer Data to Cloud Account). False positives:
    work with clients and suppliers; allowlist their domains.
    """
    return f"""
SELECT team_id, 'medium' AS severity, min(timestamp) AS first_seen,
       max(timestamp) AS last_seen, actor_email AS actor, asset, count(*) AS events,
       json_object('event_type', event_type, 'recipients', recipients, 'asset_id', min(asset_id),
                   'ip_address', min(ip_address), 'country', min(country)) AS evidence,
       {
        _key(
            "team_id",
            "event_type",
            "actor_email",
            "asset",
            "array_to_string(recipients, ',')",
            "epoch(timestamp)",
        )
    } AS dedup_key
FROM (
    SELECT *, list_sort(list_distinct(list_filter(candidates, lambda e: contains(e, '@')
                  AND lower(split_part(e, '@', 2)) <> actor_domain
                  AND NOT list_contains({_strings(cfg.allowed_share_domains)},
                                        lower(split_part(e, '@', 2)))))) AS recipients
    FROM (
        SELECT *, lower(split_part(actor_email, '@', 2)) AS actor_domain,
               coalesce(asset_path, asset_name, asset_id, shared_link) AS asset,
               list_concat(
                   coalesce(list_transform(
                       list_filter(CAST(json_extract(participants, '$[*]') AS JSON[]),
                                   lambda p: json_extract_string(p, '$.user.".tag"')
                                             = 'non_team_member'),
                       lambda p: json_extract_string(p, '$.user.email')), []),
                   coalesce(json_extract_string(details, '$.external_users[*].user_identifier'),
                            []),
                   coalesce(json_extract_string(details, '$.invitees[*]'), [])
               ) AS candidates
        FROM {INPUT_VIEW}
        WHERE event_type IN {sql_in(SHARE_TYPES)} AND actor_user_type = 'team_member'
    )
)
WHERE len(recipients) > 0
GROUP BY team_id, event_type, actor_email, asset, recipients, timestamp
"""


def _mass_operation(types: tuple[str, ...], files: int, severity: str, minutes: int) -> str:
    """One actor touching at least `files` distinct files with `types` within one window."""
    return f"""
SELECT team_id, '{severity}' AS severity, min(timestamp) AS first_seen,
       max(timestamp) AS last_seen, actor, printf('%d files', count(DISTINCT file_key)) AS asset,
       count(*) AS events,
       json_object('files', count(DISTINCT file_key), 'window_start', {_iso("window_start")},
                   'window_minutes', {minutes}, 'event_types', list_sort(list(DISTINCT event_type)),
                   'sample_paths', list_sort(list(DISTINCT coalesce(asset_path, asset_name)))[1:10],
                   'ip_addresses', list_sort(list(DISTINCT ip_address)),
                   'countries', list_sort(list(DISTINCT country))) AS evidence,
       {_key("team_id", "actor", "epoch(window_start)")} AS dedup_key
FROM (SELECT *, coalesce(actor_email, actor_app_id) AS actor,
             coalesce(asset_id, asset_path, asset_name) AS file_key,
             time_bucket(INTERVAL {minutes} MINUTE, timestamp) AS window_start
      FROM {INPUT_VIEW} WHERE event_type IN {sql_in(types)})
WHERE actor IS NOT NULL AND file_key IS NOT NULL
GROUP BY team_id, actor, window_start
HAVING count(DISTINCT file_key) >= {files}
"""


def mass_download(cfg: DetectionConfig) -> str:
    """One actor downloaded at least `mass_download_files` distinct files in one window.

    Counts `file_download`, `shared_content_download` and `shared_link_download` by a signed-in
    actor (or an app). Why: bulk collection before leaving, or a stolen session emptying the
    account. ATT&CK T1530 (Data from Cloud Storage). False positives: a new laptop syncing, a
    backup or migration app; raise the threshold or ignore the app.
    """
    return _mass_operation(
        DOWNLOAD_TYPES, cfg.mass_download_files, "medium", cfg.mass_window_minutes
    )


def mass_delete(cfg: DetectionConfig) -> str:
    """One actor deleted at least `mass_delete_files` distinct files in one window.

    Counts `file_delete` and `file_permanently_delete`. Why: sabotage, ransomware-style
    destruction, or covering tracks. ATT&CK T1485 (Data Destruction). False positives: clean-ups
    of old projects, a sync client removing a folder.
    """
    return _mass_operation(DELETE_TYPES, cfg.mass_delete_files, "high", cfg.mass_window_minutes)


def anonymous_link_burst(cfg: DetectionConfig) -> str:
    """One shared link (or file) opened without signing in from many IPs or countries.

    Within one `link_burst_window_hours` window: at least `link_burst_ips` IP addresses or
    `link_burst_countries` countries. Why: the link has leaked (posted publicly, forwarded) and
    anyone can read the content. ATT&CK T1567 (Exfiltration Over Web Service). False
    positives: links published on purpose (press kits, public downloads).
    """
    return f"""
SELECT team_id, 'medium' AS severity, min(timestamp) AS first_seen, max(timestamp) AS last_seen,
       'anonymous' AS actor, coalesce(min(asset_path), min(asset_name), link_key) AS asset,
       count(*) AS events,
       json_object('link', min(shared_link), 'file_id', min(asset_id),
                   'owner', min(content_owner_email), 'ip_count', count(DISTINCT ip_address),
                   'ip_addresses', list_sort(list(DISTINCT ip_address))[1:20],
                   'countries', list_sort(list(DISTINCT country)),
                   'event_types', list_sort(list(DISTINCT event_type)),
                   'window_start', {_iso("window_start")},
                   'window_hours', {cfg.link_burst_window_hours}) AS evidence,
       {_key("team_id", "link_key", "epoch(window_start)")} AS dedup_key
FROM (SELECT *, coalesce(shared_link, asset_id, asset_path) AS link_key,
             time_bucket(INTERVAL {cfg.link_burst_window_hours} HOUR, timestamp) AS window_start
      FROM {INPUT_VIEW} WHERE auth_status = 'unauthenticated')
WHERE link_key IS NOT NULL
GROUP BY team_id, link_key, window_start
HAVING count(DISTINCT ip_address) >= {cfg.link_burst_ips}
    OR count(DISTINCT country) >= {cfg.link_burst_countries}
"""


def login_brute_force(cfg: DetectionConfig) -> str:
    """At least `brute_force_failures` failed sign-ins to one account in one window.

    High when the account then signed in (within the window or the next one): the guessing
    may have worked. Why: password guessing and credential stuffing. ATT&CK T1110 (Brute
    Force). False positives: a member with a changed password on an old device retrying.
    """
    minutes = cfg.brute_force_window_minutes
    return f"""
SELECT team_id,
       CASE WHEN success_at IS NOT NULL THEN 'high' ELSE 'medium' END AS severity,
       first_seen, last_seen, account AS actor, account AS asset, events,
       json_object('account', account, 'failures', events, 'ip_count', ip_count,
                   'ip_addresses', ip_addresses, 'countries', countries,
                   'window_start', {_iso("window_start")}, 'window_minutes', {minutes},
                   'signed_in_after', {_iso("success_at")}) AS evidence,
       {_key("team_id", "account", "epoch(window_start)")} AS dedup_key
FROM (
    SELECT f.*,
           (SELECT min(s.timestamp) FROM {INPUT_VIEW} AS s
            WHERE s.event_type = 'login_success' AND s.team_id = f.team_id
              AND coalesce(s.actor_email, s.context_email) = f.account
              AND s.timestamp >= f.first_seen
              AND s.timestamp < f.window_start + INTERVAL {2 * minutes} MINUTE) AS success_at
    FROM (
        SELECT team_id, account, window_start, min(timestamp) AS first_seen,
               max(timestamp) AS last_seen, count(*) AS events,
               count(DISTINCT ip_address) AS ip_count,
               list_sort(list(DISTINCT ip_address))[1:20] AS ip_addresses,
               list_sort(list(DISTINCT country)) AS countries
        FROM (SELECT *, coalesce(actor_email, context_email) AS account,
                     time_bucket(INTERVAL {minutes} MINUTE, timestamp) AS window_start
              FROM {INPUT_VIEW} WHERE event_type = 'login_fail')
        WHERE account IS NOT NULL
        GROUP BY team_id, account, window_start
        HAVING count(*) >= {cfg.brute_force_failures}
    ) AS f
)
"""


def new_country_sign_in(cfg: DetectionConfig) -> str:
    """An account signed in from a country it has not signed in from for `lookback` days.

    Only for accounts with at least `new_country_min_history` sign-ins in the look back (an
    account needs a usual place first); `allowed_countries` are never new. One finding per
    account, country and day. Why: a stolen password used from abroad. ATT&CK T1078.004 (Valid
    Accounts: Cloud Accounts). False positives: travel, VPN exits, mobile roaming.
    """
    days = cfg.new_country_lookback_days
    earlier = f"RANGE BETWEEN INTERVAL {days} DAY PRECEDING AND INTERVAL 1 SECOND PRECEDING"
    return f"""
SELECT team_id, 'medium' AS severity, min(timestamp) AS first_seen, max(timestamp) AS last_seen,
       account AS actor, country AS asset, count(*) AS events,
       json_object('account', account, 'country', country,
                   'cities', list_sort(list(DISTINCT city)),
                   'ip_addresses', list_sort(list(DISTINCT ip_address)),
                   'usual_countries', min(usual_countries), 'lookback_days', {days},
                   'sign_ins_in_lookback', min(history)) AS evidence,
       {_key("team_id", "account", "country", "event_date")} AS dedup_key
FROM (
    SELECT *,
           max(timestamp) OVER (PARTITION BY team_id, account, country ORDER BY timestamp
                                {earlier}) AS previous_here,
           count(*) OVER (PARTITION BY team_id, account ORDER BY timestamp {earlier}) AS history,
           list_sort(list_distinct(list(country) OVER (PARTITION BY team_id, account
                                   ORDER BY timestamp {earlier}))) AS usual_countries
    FROM (SELECT *, coalesce(actor_email, context_email) AS account FROM {INPUT_VIEW}
          WHERE event_type = 'login_success')
    WHERE account IS NOT NULL AND country IS NOT NULL
)
WHERE previous_here IS NULL AND history >= {cfg.new_country_min_history}
  AND NOT list_contains({_strings(cfg.allowed_countries)}, upper(country))
GROUP BY team_id, account, country, event_date
"""
