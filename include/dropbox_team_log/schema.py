"""The dataset's contract with its readers: the columns, the partition key, auth_status values.

Analysts' tools (DuckDB, pandas, Spark, Trino) read `<root>/event_date=YYYY-MM-DD/*.parquet`
with these columns; docs/data_dictionary.md explains each one. Changing anything here changes the
files every deployment has already written.
"""

from __future__ import annotations

import pyarrow as pa

#: `timestamp` is the event's time to the second (Dropbox's granularity), UTC.
TIMESTAMP_TYPE = pa.timestamp("s", tz="UTC")
#: `ingested_at` is when the pipeline wrote the row, to the millisecond, UTC.
INGESTED_AT_TYPE = pa.timestamp("ms", tz="UTC")

#: Column order is the file layout (the transform fills its columns in exactly this order).
EVENT_SCHEMA = pa.schema(
    [
        pa.field("timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_type_description", pa.string()),
        pa.field("event_category", pa.string()),
        pa.field("auth_status", pa.string(), nullable=False),
        pa.field("actor_type", pa.string()),
        pa.field("actor_user_type", pa.string()),
        pa.field("actor_email", pa.string()),
        pa.field("actor_display_name", pa.string()),
        pa.field("actor_account_id", pa.string()),
        pa.field("actor_app_id", pa.string()),
        pa.field("ip_address", pa.string()),
        pa.field("country", pa.string()),
        pa.field("region", pa.string()),
        pa.field("city", pa.string()),
        pa.field("access_method", pa.string()),
        pa.field("involve_non_team_member", pa.bool_()),
        pa.field("context_type", pa.string()),
        pa.field("assets", pa.string()),
        pa.field("participants", pa.string()),
        pa.field("details", pa.string()),
        pa.field("raw_event", pa.string(), nullable=False),
        pa.field("team_id", pa.string(), nullable=False),
        pa.field("ingested_at", INGESTED_AT_TYPE, nullable=False),
    ]
)

#: Columns holding JSON text: the nested parts whose shape varies by event type.
JSON_COLUMNS = ("assets", "participants", "details")
#: The event exactly as the API sent it (its own bytes, not a re-serialisation).
RAW_EVENT_COLUMN = "raw_event"

#: auth_status: anyone the log names signed in; an anonymous actor did not (shared link views).
AUTHENTICATED = "authenticated"
UNAUTHENTICATED = "unauthenticated"
UNKNOWN = "unknown"
AUTH_STATUSES = (AUTHENTICATED, UNAUTHENTICATED, UNKNOWN)

#: The hive partition: one folder per UTC day of the events' timestamps.
PARTITION_KEY = "event_date"
#: What a reader of the hive layout sees: the columns, then the partition as a DATE column.
READER_SCHEMA = EVENT_SCHEMA.append(pa.field(PARTITION_KEY, pa.date32()))
#: What a reader globs under the root to see every row exactly once (`_reports/`, `_locks/` and
#: hidden temp files never match).
DAY_FILES_GLOB = f"{PARTITION_KEY}=*/*.parquet"
