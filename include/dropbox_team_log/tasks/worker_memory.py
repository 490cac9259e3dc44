"""Allocator settings for a process that streams a day of events: memory handed back when freed.

A day's sync allocates and frees the same few shapes for hours: a page body of about 1 MB per
call in flight, the Arrow buffers of its batch, a row group being written. With the defaults,
freed memory stays with the process, so peak RSS grows with the day even though the code holds
a bounded amount (docs/performance.md has the measurements):

- Arrow's default pool (mimalloc) keeps a heap per thread and returns pages lazily; the system
  allocator frees large buffers at once. pyarrow's own calls follow `pa.set_memory_pool`, but
  Arrow's C++ picks its default once, from `ARROW_DEFAULT_MEMORY_POOL`, when pyarrow loads; the
  IPC and Parquet writers allocate from that one. So the worker's environment must hold
  `settings.WORKER_ENV` (the Dockerfile and the Makefile set it).
- glibc raises its mmap threshold each time a large block is freed, after which ~1 MB blocks
  come from the heap, which it trims rarely; a fixed threshold keeps them mmapped, so each free
  returns the pages.
- pyarrow imports pandas (tens of MB) the first time it converts a Python list or scalar, only
  to ask whether the object is a pandas one. The sync never makes pandas objects.

These are process-wide, so they are applied by the task entry point (`sync_tasks.sync_day`),
whose process runs that one task, never on import.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import logging
import os
import sys

import pyarrow as pa

from dropbox_team_log.settings import WORKER_ENV

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial value, kept fixed instead of rising


def use_lean_allocators() -> None:
    """Apply the settings above to this process (idempotent, each best-effort)."""
    for name, value in WORKER_ENV.items():
        if os.environ.get(name) != value:
            log.info(
                "%s is not %r in this worker's environment: a day's sync will use more memory "
                "than it needs (see dropbox_team_log.tasks.worker_memory)",
                name,
                value,
            )
    pa.set_memory_pool(pa.system_memory_pool())
    _fix_glibc_mmap_threshold()
    _keep_pandas_out_of_pyarrow()


def _fix_glibc_mmap_threshold() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:  # the process's own symbols: libc is loaded, no library search needed
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; keeping the allocator's default")


class _RefusePandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "pandas":
            raise ImportError("pandas is kept out of pyarrow's conversions in this process")


def _keep_pandas_out_of_pyarrow() -> None:
    """Let pyarrow's one-time pandas probe find no pandas.

    pyarrow asks once per process and remembers the answer for its "is this a pandas object?"
    checks; anything that really needs pandas (`to_pandas()`) imports it again on use, so this
    changes no behaviour, only what an array conversion costs. A process that already imported
    pandas keeps it.
    """
    if "pandas" in sys.modules:
        return
    refuse = _RefusePandas()
    sys.meta_path.insert(0, refuse)
    try:
        pa.lib._pandas_api.have_pandas  # ruff: ignore[useless-expression] - the probe runs on access
    finally:
        sys.meta_path.remove(refuse)
