"""Dropbox Business team activity log -> hive-partitioned Parquet, on Apache Airflow."""

from __future__ import annotations

__version__ = "0.1.0"
