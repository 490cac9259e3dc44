"""The hive-partitioned Parquet dataset: per day folder, hour files replaced atomically one at a
time, locally or on S3, each with the coverage ledger in its footer that makes "exact" checkable.

Modules, from the entry point down:

- `store`: `EventDataset` and `write_day`: only the hour files a write touches, or a settled
  day's one day file (local and S3).
- `day_files`: a day's files listed and read (coverage, timestamps, rows), damaged ones healed.
- `layout`: names and parses the folders and files (`event_date=D/events-HH.parquet`, or a
  day file `events.parquet`).
- `merge`: one file's rewrite, old rows and new rows streamed into sorted row groups.
- `spool`: a write's new rows (`NewRows`, `RowSpool`), added page by page, read back sorted.
- `file_format`: the Parquet options of a day file and its footer keys (coverage, version).
- `ledger`: `Coverage`, which ranges of a day the rows answer exactly, as of when.
- `columns`: EVENT_SCHEMA enforced on every batch, timestamps as numpy seconds, range masks.
- `files`: the day lock, private folders, `write_atomically` (temp file, fsync, rename).
- `integrity`: is a day file whole (every page's checksum)? Moving a damaged one aside.
- `object_store`: the S3 calls (conditional PUT) a plain filesystem does not have.
- `root_check`: is a dataset root writable? Checked before any API call.
"""
