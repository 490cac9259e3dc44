"""Damage done to a day file the way disks and copies do it: cut short, or bytes changed inside a
page with the footer left intact (which only the page checksums can tell)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq


def truncate(path: str | Path, keep: float = 0.5) -> bytes:
    """Cut the file to `keep` of its size (the footer goes); returns what is left."""
    data = Path(path).read_bytes()[: int(Path(path).stat().st_size * keep)]
    Path(path).write_bytes(data)
    return data


def flip_inside_page(path: str | Path, column: str, row_group: int = 0) -> int:
    """Invert one byte near the end of a column chunk's pages; the footer stays as it was.

    A chunk's last bytes are its last page's compressed data (a page's header comes first, a
    few dozen bytes, which in a small hour file can be half the chunk), and the page's CRC
    covers them. Returns the offset changed.
    """
    meta = pq.read_metadata(str(path))
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = meta.row_group(row_group).column(names.index(column))
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and chunk.dictionary_page_offset is not None:
        start = min(start, chunk.dictionary_page_offset)
    offset = start + chunk.total_compressed_size - 2
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    return offset
