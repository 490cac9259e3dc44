"""S3 through s3fs: the few calls the dataset needs that a plain filesystem does not have.

An object store has no rename and no lock, but it has two things a file system lacks: a PUT of a
key is atomic (readers see the old object or the new one), and a PUT can be conditional
(`If-Match: <etag>` / `If-None-Match: *`). The dataset builds its writes on those two; this module
wraps them and turns botocore's failures into messages that say what to fix.

Credentials and endpoint come from the standard AWS chain of the process that runs the task
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, an instance or pod
role; AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for an S3-compatible server).
"""

from __future__ import annotations

import sys
from typing import Any

import fsspec

PROTOCOLS = frozenset({"s3", "s3a"})
#: One PUT holds at most 5 GiB: a day file beyond that would need a multipart upload.
MAX_PUT_BYTES = 5 * 2**30
#: Status / codes S3 answers when a conditional write loses against another writer.
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


class WriteConflict(Exception):
    """The object changed (or appeared) since it was read: merge again from the new state."""


def lost_race_errors() -> tuple[type[BaseException], ...]:
    """What a write that lost the race to another writer raises: `WriteConflict`, and s3fs's
    `FileExpired` (it reads with If-Match on the ETag it opened, so a replaced object fails).

    Looked up when an error is being matched, not imported up front: s3fs pulls in botocore,
    a heavy import for every task process, and if it was never imported no S3 read can have
    raised it.
    """
    s3fs_utils = sys.modules.get("s3fs.utils")
    expired = getattr(s3fs_utils, "FileExpired", None)
    return (WriteConflict, expired) if expired else (WriteConflict,)


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return bool(PROTOCOLS.intersection(protocols))


def filesystem(root: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and path of a root; S3 without listings cache (other writers exist)."""
    protocol = fsspec.core.split_protocol(str(root))[0]
    if protocol in PROTOCOLS:
        return fsspec.core.url_to_fs(str(root), use_listings_cache=False)
    return fsspec.core.url_to_fs(str(root))


def error_code(exc: BaseException) -> str | None:
    """The S3 error code (or HTTP status) behind an s3fs/botocore exception, if any."""
    for err in (exc, exc.__cause__, exc.__context__):
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            code = error.get("Code")
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            return str(code or status) if (code or status) else None
    return None


def put_if(fs: Any, path: str, data: bytes, etag: str | None) -> str:
    """PUT `data` at `path` only if the key still holds `etag` (None: only if it is absent).

    Returns the new ETag; raises WriteConflict when another writer got there first.
    """
    if len(data) > MAX_PUT_BYTES:
        raise ValueError(
            f"{path}: {len(data)} bytes exceed one S3 PUT (5 GiB); split the dataset finer"
        )
    bucket, key, _ = fs.split_path(path)
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        out = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
    except OSError as exc:
        if error_code(exc) in _CONFLICT_CODES:
            raise WriteConflict(path) from exc
        raise
    finally:
        fs.invalidate_cache(path)
    return str(out.get("ETag", ""))


def delete(fs: Any, path: str) -> None:
    bucket, key, _ = fs.split_path(path)
    fs.call_s3("delete_object", Bucket=bucket, Key=key)
    fs.invalidate_cache(path)
