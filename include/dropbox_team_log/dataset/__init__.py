"""The hive-partitioned Parquet dataset: day files replaced atomically, locally or on S3, each
with the coverage ledger in its footer that makes "exact" checkable."""
