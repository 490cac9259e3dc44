"""S3 through s3fs: the few calls the dataset needs that a plain filesystem does not have.

An object store has no rename and no lock, but it has two things a file system lacks: a write of
a key is atomic (readers see the old object or the new one, whether it came as one PUT or as a
completed multipart upload), and it can be conditional (`If-Match: <etag>` / `If-None-Match: *`
on PutObject and on CompleteMultipartUpload). The dataset builds its writes on those two; this
module wraps them and turns botocore's failures into messages that say what to fix.

`upload_if` sends a local file: one PUT up to `S3_PART_BYTES`, beyond that a multipart upload of
parts that size read one at a time, so the upload holds one part in memory, not the day. The
upload is completed on the same condition a PUT would carry, and aborted on any failure.

Credentials and endpoint come from the standard AWS chain of the process that runs the task
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, an instance or pod
role; AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for an S3-compatible server), unless the task
made an Airflow AWS connection's the default of every S3 filesystem
(`deployment.use_aws_connection`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import fsspec

from dropbox_team_log.settings import S3_PART_BYTES, S3_PROTOCOLS, S3_STALE_UPLOAD_HOURS

PROTOCOLS = frozenset(S3_PROTOCOLS)
#: One PUT holds at most 5 GiB; a multipart upload at most 10,000 parts of 5 MiB to 5 GiB.
MAX_PUT_BYTES = 5 * 2**30
MIN_PART_BYTES = 5 * 2**20
MAX_PARTS = 10_000
#: Status / codes S3 answers when a conditional write loses against another writer.
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
#: With `If-Match`, the object is gone since it was read: it changed, as far as the write goes.
_GONE_CODES = frozenset({"NoSuchKey"})

log = logging.getLogger(__name__)


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


def is_s3_url(root: str) -> bool:
    return fsspec.core.split_protocol(str(root))[0] in PROTOCOLS


def filesystem(root: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and path of a root; S3 without listings cache (other writers exist)."""
    if is_s3_url(root):
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


def _condition(etag: str | None) -> dict[str, str]:
    return {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}


def _conditional_write(path: str, etag: str | None, write: Callable[[], dict]) -> str:
    """Run a conditional write; its ETag, or WriteConflict when another writer got there first."""
    try:
        out = write()
    except OSError as exc:
        code = error_code(exc)
        if code in _CONFLICT_CODES or (etag and code in _GONE_CODES):
            raise WriteConflict(path) from exc
        raise
    return str(out.get("ETag", ""))


def put_if(fs: Any, path: str, data: bytes, etag: str | None) -> str:
    """PUT `data` at `path` only if the key still holds `etag` (None: only if it is absent).

    Returns the new ETag; raises WriteConflict when another writer got there first.
    """
    if len(data) > MAX_PUT_BYTES:
        raise ValueError(f"{path}: {len(data)} bytes exceed one S3 PUT (5 GiB): use upload_if")
    bucket, key, _ = fs.split_path(path)
    try:
        return _conditional_write(
            path,
            etag,
            lambda: fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **_condition(etag)),
        )
    finally:
        fs.invalidate_cache(path)


def upload_if(
    fs: Any, path: str, source: IO[bytes], etag: str | None, *, part_bytes: int = S3_PART_BYTES
) -> str:
    """Upload the whole file `source` to `path` only if the key still holds `etag` (None: only if
    it is absent): one PUT up to `part_bytes`, else a multipart upload of `part_bytes` parts.

    Memory: one part. Returns the new ETag; raises WriteConflict when another writer got there
    first.
    """
    size = source.seek(0, os.SEEK_END)
    source.seek(0)
    if size <= part_bytes:
        return put_if(fs, path, source.read(), etag)
    part_bytes = max(part_bytes, MIN_PART_BYTES, math.ceil(size / MAX_PARTS))
    return multipart_upload_if(fs, path, source, etag, part_bytes=part_bytes)


def multipart_upload_if(
    fs: Any, path: str, source: IO[bytes], etag: str | None, *, part_bytes: int
) -> str:
    """`source` from where it stands to `path` as a multipart upload of `part_bytes` parts,
    completed only if the key still holds `etag` (None: only if it is absent).

    Parts are read and sent one at a time. On any failure, a lost race included, the upload is
    aborted, so S3 drops (and stops billing) its parts.
    """
    bucket, key, _ = fs.split_path(path)
    _abort_stale_uploads(fs, bucket, key)
    upload_id = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
    try:
        parts = []
        while chunk := source.read(part_bytes):
            number = len(parts) + 1
            out = fs.call_s3(
                "upload_part",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=chunk,
            )
            parts.append({"PartNumber": number, "ETag": out["ETag"]})
            del chunk  # freed before the next part is read
        return _conditional_write(
            path,
            etag,
            lambda: fs.call_s3(
                "complete_multipart_upload",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **_condition(etag),
            ),
        )
    except BaseException:
        abort_upload(fs, bucket, key, upload_id)
        raise
    finally:
        fs.invalidate_cache(path)


def abort_upload(fs: Any, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload, so S3 drops (and stops billing) its parts; never raises: the
    failure that brought us here is the one to report."""
    try:
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception as exc:  # the original failure matters more
        log.warning(
            "s3://%s/%s: could not abort multipart upload %s (%s): its parts stay until a "
            "lifecycle rule (AbortIncompleteMultipartUpload) or the next write of the key "
            "removes them; grant s3:AbortMultipartUpload",
            bucket,
            key,
            upload_id,
            error_code(exc) or type(exc).__name__,
        )


def _abort_stale_uploads(fs: Any, bucket: str, key: str) -> None:
    """Abort the multipart uploads of `key` started more than S3_STALE_UPLOAD_HOURS ago: a
    writer killed while uploading left them (a live one finishes in minutes)."""
    cutoff = datetime.now(UTC) - timedelta(hours=S3_STALE_UPLOAD_HOURS)
    try:
        listed = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
    except Exception as exc:  # listing is housekeeping: a write must not fail for it
        log.info("s3://%s/%s: multipart uploads not listed (%s)", bucket, key, error_code(exc))
        return
    for upload in listed.get("Uploads", []):
        if upload.get("Key") == key and upload.get("Initiated", cutoff) < cutoff:
            log.info(
                "s3://%s/%s: aborting a dead writer's upload %s", bucket, key, upload["UploadId"]
            )
            abort_upload(fs, bucket, key, upload["UploadId"])


def delete(fs: Any, path: str) -> None:
    bucket, key, _ = fs.split_path(path)
    fs.call_s3("delete_object", Bucket=bucket, Key=key)
    fs.invalidate_cache(path)
