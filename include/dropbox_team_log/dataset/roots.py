"""Dataset roots taken literally: the characters of a root are never glob syntax.

The readers and the temp-file cleanup find files by pattern under the root
(`event_date=*/*.parquet`, `.events-13.parquet.*.tmp`), and fsspec and DuckDB expand `[`, `*` and
`?` wherever they stand in a pattern: a root `/data/team[1]` would match `/data/team1`, and a
root `/data/*` every folder beside it. `glob_under` escapes the root and appends the pattern;
`literal` escapes a path that must name one file (DuckDB expands each path of a `read_parquet`
list too). The escape writes each metacharacter as a one-character class (`[[]`, `[*]`, `[?]`),
which fsspec (local and S3) and DuckDB both read as the character itself.
"""

from __future__ import annotations

import glob


def literal(path: str) -> str:
    """`path` as a glob pattern that matches `path` only."""
    return glob.escape(path)


def glob_under(base: str, pattern: str) -> str:
    """A glob of `pattern` below the folder `base`, `base` matched literally."""
    return f"{literal(base.rstrip('/'))}/{pattern}"
