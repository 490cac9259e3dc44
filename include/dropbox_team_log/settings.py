"""Every name and default the pipeline is configured by, in one place: constants only.

Airflow connection ids and type, Airflow Variables, environment variables, DAG ids, the pool, the
events Asset, and the defaults of the DAG params. Nothing here is read at import time and this
module imports nothing, so the DAG files, the provider metadata and the CLI's `--help` can use it
for free. Reading a setting (a Variable, with its default) happens where it is used:
`deployment.py` for the dataset root, report path and connection id.
"""

# --- Airflow connections ---------------------------------------------------------------------

#: The connection type this package registers (get_provider_info.py, the hook).
CONN_TYPE = "dropbox_team"
#: The team's connection when neither the `conn_id` param nor `CONN_ID_VARIABLE` names one.
DEFAULT_CONN_ID = "dropbox_team_default"
#: Optional connection whose host is the failure-alert webhook URL (notifications/alerts.py).
ALERT_CONN_ID = "dropbox_team_log_alerts"

# --- Airflow Variables -----------------------------------------------------------------------

#: Dataset root: a local folder or s3://bucket/prefix (default: see deployment.py).
OUTPUT_VARIABLE = "dropbox_team_log_output"
#: Connection id of the team, when it is not `DEFAULT_CONN_ID`.
CONN_ID_VARIABLE = "dropbox_team_log_conn_id"
#: The teams the scheduled DAG collects: a JSON list of connection ids, or of objects
#: `{"conn_id": "...", "paused": false}` (team_registry.py). Absent or empty: the one team of
#: `CONN_ID_VARIABLE` / `DEFAULT_CONN_ID`. Kept by `dropbox-team-log connect` and `teams`.
TEAMS_VARIABLE = "dropbox_team_log_teams"
#: Where the report DAG writes the HTML report (default: `<root>/_reports/`).
REPORT_PATH_VARIABLE = "dropbox_team_log_report_path"
#: Teams failing and already alerted, per kind of error (notifications/alert_state.py): kept
#: by the tasks' callbacks so a persistent failure alerts once, not at every run. Each team has
#: its own Variable `<this>.<conn_id>`; this one is only read, as an earlier version kept it.
ALERT_STATE_VARIABLE = "dropbox_team_log_alert_state"
#: Seconds a first alert (or a recovery) waits after claiming it in `ALERT_STATE_VARIABLE`
#: before checking the claim held: two tasks of one team failing at once send one alert.
ALERT_CLAIM_SETTLE_SECONDS = 1.0
#: Opt-in pseudonymisation key, or `conn:<conn_id>` naming a connection whose password is it.
PSEUDONYMISE_KEY_VARIABLE = "dropbox_team_log_pseudonymise_key"

# --- metadata DB table (web/used_states.py) --------------------------------------------------

#: The teams page's single-use record of OAuth `state`s, a table of this package in Airflow's
#: metadata DB (web/used_states.py): shared by every api-server worker and host.
OAUTH_STATE_TABLE = "dropbox_team_log_oauth_state"

# --- environment variables -------------------------------------------------------------------

#: Cron or preset of the incremental DAG (an env var: no DB access at parse time).
SCHEDULE_ENV = "DROPBOX_TEAM_LOG_SCHEDULE"
DEFAULT_SCHEDULE = "*/4 * * * *"
#: Concurrent API calls of one day's sync. A team's rate limit is shared by every running task:
#: the total is this times the `API_POOL` slots, so size the two together.
API_CONCURRENCY_ENV = "DROPBOX_TEAM_LOG_API_CONCURRENCY"
DEFAULT_API_CONCURRENCY = 4
MAX_API_CONCURRENCY = 8  # the HTTP session's connection pool (client/transport.py)
#: Where `dropbox-team-log connect` reads the app secret from (never from argv if avoidable).
APP_SECRET_ENV = "DROPBOX_APP_SECRET"  # ruff: ignore[hardcoded-password-string] (a name)
#: What the environment of a process that runs sync tasks should hold, set before it starts
#: (the Dockerfile and the Makefile set it; tasks/worker_memory.py says why).
WORKER_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "system"}

# --- DAGs, pool, Asset -----------------------------------------------------------------------

BACKFILL_DAG_ID = "dropbox_team_log_backfill"
INCREMENTAL_DAG_ID = "dropbox_team_log_incremental"
REPORT_DAG_ID = "dropbox_team_log_report"
#: Caps concurrent day tasks of both sync DAGs: size it to the team's rate limit.
API_POOL = "dropbox_api"
#: Slots `connect` gives the pool when it creates it (an existing pool's size is kept).
API_POOL_SLOTS = 4
#: The most `API_POOL` slots one backfill run holds at once (`max_active_tis_per_dagrun` of its
#: day task; one backfill runs at a time), so the incremental DAG always has the rest.
BACKFILL_MAX_ACTIVE_DAYS = 2
#: Priority of the incremental day tasks in the pool over the backfill's (Airflow's
#: priority_weight): a freed slot goes to keeping every team current first.
INCREMENTAL_PRIORITY_WEIGHT = 10
#: Emitted by every successful day write, so downstream DAGs run on new data. The `x-` scheme
#: is Airflow's mark of a user-defined URI: not normalised, so defining it loads no provider's
#: URI handlers (the Amazon one would import boto3 into every task process).
EVENTS_ASSET_NAME = "dropbox_team_log_events"
EVENTS_ASSET_URI = "x-dropbox-team-log://events"

# --- defaults of the DAG params --------------------------------------------------------------

#: Backfill: the days before the connection's connected_at, and the most one run may span.
BACKFILL_DAYS = 60
MAX_BACKFILL_DAYS = 365
#: Incremental: age after which data is final. Dropbox delivers events up to 24 h late, so
#: less than that could lose late events; the default adds a 1 h margin.
SETTLE_HOURS = 25
MIN_SETTLE_HOURS = 24
#: Incremental: re-read unsettled data this often (0: only settle). Each refresh fetches every
#: unsettled event again: 24 h of settle window / REFRESH_HOURS more fetches per event
#: (docs/operations.md, "Refresh").
REFRESH_HOURS = 0
#: Incremental: time settles in whole batches of this many hours (one fetch per batch, once all
#: of it is SETTLE_HOURS old), not a few minutes per run.
SETTLE_BATCH_HOURS = 1
#: Incremental: how far back a run fills gaps after an outage.
CATCHUP_DAYS = 7
#: A day whose end is this many hours before a write, and which has no hour files of the team
#: yet (a backfill's or a catch-up's first write of an old day, a refetch of a deleted day), is
#: written as the team's one day file `events.parquet` instead of 24 hour files
#: (dataset/store.py). Settled history is written once and read often: one file a day writes
#: ~10x faster than 24, stores ~half the bytes, and readers open 1 file a day instead of 24.
#: The cost: any later write of such a day (a late event, a tail flush, a refetch) rewrites the
#: whole day file, and a day never changes kind. Dropbox delivers events up to ~24 h late and
#: the incremental run settles time SETTLE_HOURS old, so after 48 h a day is written again only
#: in rare cases; much less would make the settle and the tail rewrite whole days.
DAY_FILE_AFTER_HOURS = 48
#: Incremental: a tail poll's claim on its chain (sync/tail.py) outlives a dead run this long;
#: meanwhile other runs leave the chain alone (their day tasks fetch what is due).
TAIL_CLAIM_SECONDS = 15 * 60
#: Incremental: the tail adds rows of hours before the previous one (late events) to their
#: hour files this often, all at once (each such file rewritten once per flush, not per poll);
#: meanwhile they wait in `_tail/` (not yet readable).
TAIL_LATE_FLUSH_SECONDS = 60 * 60
#: A poll adds the previous hour's rows at once only this far into an hour; later they wait
#: for the flush too (each poll would rewrite that whole hour file for a few stragglers).
TAIL_PREVIOUS_HOUR_SECONDS = 15 * 60
#: Report: the days it covers (compared with as many days before).
REPORT_DAYS = 30
MAX_REPORT_DAYS = 366
#: The report's default place: `<root>/_reports/<file>`, beside the data and outside its glob
#: (pyarrow and Spark skip `_`-prefixed folders too).
REPORTS_DIR = "_reports"
REPORT_FILE = "dropbox_team_log_report.html"
#: Each team's name card, `<root>/_teams/<conn_id>.json` (conn_id, team_id, team_name, the key
#: of its files), beside the data and outside its glob: what the `teams` view reads
#: (dataset/team_info.py). The rows themselves carry `team_id`.
TEAMS_DIR = "_teams"
#: Where damaged day files are moved, kept for inspection: `<root>/_quarantine/event_date=D/`,
#: outside the readers' glob (dataset/integrity.py).
QUARANTINE_DIR = "_quarantine"

# --- detections and findings (analytics/detections.py, docs/detections.md) -------------------

#: Evaluates the detections over the days that changed and raises new findings (on the Asset).
DETECTIONS_DAG_ID = "dropbox_team_log_detections"
#: The pipeline's DAGs: the teams page shows whether each is paused and can unpause it.
PIPELINE_DAG_IDS = (INCREMENTAL_DAG_ID, BACKFILL_DAG_ID, REPORT_DAG_ID, DETECTIONS_DAG_ID)
#: A JSON object overriding DETECTION_DEFAULTS key by key, e.g.
#: `{"mass_delete_files": 100, "allowed_share_domains": ["partner.example"]}`.
DETECTIONS_VARIABLE = "dropbox_team_log_detections"
#: The detections' knobs: thresholds, windows and allowlists (docs/detections.md says which
#: detection reads which). Windows are whole minutes/hours/days, aligned to UTC midnight.
DETECTION_DEFAULTS = {
    # detect_mass_download / detect_mass_delete: distinct files per actor per window.
    "mass_window_minutes": 60,
    "mass_download_files": 50,
    "mass_delete_files": 50,
    # detect_login_brute_force: failed sign-ins per account per window.
    "brute_force_window_minutes": 60,
    "brute_force_failures": 10,
    # detect_anonymous_link_burst: one link opened without signing in, per window, from at
    # least this many IP addresses or countries.
    "link_burst_window_hours": 24,
    "link_burst_ips": 10,
    "link_burst_countries": 5,
    # detect_new_country_sign_in: no sign-in from the country in the lookback, and at least
    # `min_history` sign-ins from elsewhere in it (a new account has no "usual" country yet).
    "new_country_lookback_days": 30,
    "new_country_min_history": 3,
    # Allowlists: recipients' email domains never external (detect_external_share), countries
    # never new (detect_new_country_sign_in), team-linked app ids never reported
    # (detect_app_linked), new owners' domains that keep a transfer at medium severity.
    "allowed_share_domains": (),
    "allowed_countries": (),
    "allowed_app_ids": (),
    "trusted_owner_domains": (),
}
#: The findings dataset: `<root>/_findings/`, beside the data and outside its glob.
FINDINGS_DIR = "_findings"
#: Findings listed in one alert message (all of them are in its `findings` field).
ALERT_FINDINGS_LISTED = 20

# --- OCSF export (analytics/ocsf*.py, docs/ocsf.md) ------------------------------------------

#: The OCSF schema version of every record: the one AWS Security Lake and AppFabric use.
OCSF_VERSION = "1.1.0"
#: The export's default place: `<root>/_ocsf/`, beside the data and outside its glob.
OCSF_DIR = "_ocsf"
#: What an export writes: hive partitions, Security Lake's custom-source layout, or both.
OCSF_LAYOUTS = ("hive", "security-lake", "both")
#: Keeps an OCSF copy of the dataset current, on the Asset: created paused (an optional export;
#: unpause it to start), then each run exports the days written since the last.
OCSF_EXPORT_DAG_ID = "dropbox_team_log_ocsf_export"
#: A JSON object: where the DAG exports, e.g. `{"out": "s3://<lake bucket>/", "layout":
#: "security-lake", "region": "us-east-1", "account_id": "123456789012"}` (keys as the CLI's
#: options); unset: hive partitions under `<root>/_ocsf/`.
OCSF_EXPORT_VARIABLE = "dropbox_team_log_ocsf_export"
#: A cron or preset for the OCSF export DAG instead of "after every dataset write" (each run
#: exports each changed day whole: a team of millions of events a day may want "@hourly").
OCSF_SCHEDULE_ENV = "DROPBOX_TEAM_LOG_OCSF_SCHEDULE"
#: What the DAG exported, per destination: `<root>/_ocsf_state/<key>.json` (day-file versions).
OCSF_STATE_DIR = "_ocsf_state"
#: Each (class, day) is one file of this name in its partition folder, replaced on re-export.
OCSF_FILE = "records.parquet"
#: Rows the export holds before writing them out as row groups: at most this many rows per row
#: group (Security Lake asks for at most 256 MB), and the export's memory bound.
OCSF_ROW_GROUP_ROWS = 65_536
#: Days one export query covers: up to this many rows and days (each (class, day) file of the
#: query is open until it ends).
OCSF_CHUNK_ROWS = 250_000
OCSF_CHUNK_DAYS = 16
#: Security Lake custom source per OCSF class (one class per source; names <= 20 characters).
OCSF_SECURITY_LAKE_SOURCES = {
    6006: "dropbox-file-hosting",
    3002: "dropbox-auth",
    3001: "dropbox-account-chg",
    3004: "dropbox-entity-mgmt",
    3005: "dropbox-user-access",
    3006: "dropbox-group-mgmt",
    6003: "dropbox-api-activity",
}

# --- Dropbox API -----------------------------------------------------------------------------

#: The least privilege the job needs; nothing more is ever requested.
REQUIRED_SCOPES = ("events.read", "team_info.read")
#: Per-request HTTP timeout, seconds (the connection's extra.timeout overrides it).
DEFAULT_TIMEOUT_SECONDS = 60.0
#: Events per team_log page: Dropbox's maximum, the fewest calls.
PAGE_LIMIT = 1000

# --- secrets and rate limits on the wire (client/redaction.py, client/retry_after.py) --------

#: A 429's Retry-After is obeyed up to this many seconds; a larger one is clipped.
RETRY_AFTER_MAX_SECONDS = 300.0
#: The wait after a 429 whose Retry-After is missing or nonsense (negative, not a number/date).
RETRY_AFTER_DEFAULT_SECONDS = 5.0
#: Secrets shorter than this are not scrubbed from text: they would match ordinary words.
MIN_SCRUBBED_SECRET_LENGTH = 5
#: An access token is scrubbed until this long after it expires, then forgotten: a long-lived
#: process (the api-server) would otherwise keep every token it ever obtained, and each one
#: makes the scrubbing pattern longer to compile and to run (docs/security.md).
SCRUB_AFTER_TOKEN_EXPIRY_SECONDS = 24 * 3600

# --- the dataset root and S3 (deployment.py, dataset/object_store.py, dataset/roots.py) ------

#: Airflow connection (type `aws`) the S3 dataset root is read and written with: login = access
#: key id, password = secret access key, extra `region_name`, `endpoint_url`,
#: `aws_session_token` (or whatever the Amazon provider's AwsBaseHook accepts, e.g. a role to
#: assume). Unset: the standard AWS chain of each process (environment, profile, role).
AWS_CONN_ID_VARIABLE = "dropbox_team_log_aws_conn_id"
#: URL schemes of an S3 dataset root.
S3_PROTOCOLS = ("s3", "s3a")
#: A day file larger than this goes to S3 as a multipart upload of parts this size (S3 takes
#: 5 MiB to 5 GiB per part; boto3's transfers use 8 MiB too): what the upload holds in memory,
#: about twice over while a part is sent, instead of the whole file.
S3_PART_BYTES = 8 * 2**20
#: A multipart upload of a day's key older than this was left by a writer killed mid-upload: the
#: next multipart write of that key aborts it (a live upload takes minutes).
S3_STALE_UPLOAD_HOURS = 24
