"""Is the dataset root usable? Checked in the plan task, before any API call or write.

A run that fetched for an hour and then cannot write has wasted the API budget and leaves the
reason in a task log far from its cause, so the root is checked first and every failure says what
to fix. Supported roots: a local path (or file://) and `s3://bucket/prefix`. The S3 check needs
the same rights the writers need (list, get, put) and proves the store honours conditional writes,
single PUTs and multipart uploads alike, which the dataset relies on to keep concurrent writers
exact.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Callable
from typing import Any

import fsspec

from dropbox_team_log.dataset import object_store
from dropbox_team_log.errors import PermanentError
from dropbox_team_log.settings import AWS_CONN_ID_VARIABLE, OUTPUT_VARIABLE

_HINT = (
    f"set the Airflow Variable '{OUTPUT_VARIABLE}' "
    f"(AIRFLOW_VAR_{OUTPUT_VARIABLE.upper()}) to a writable local folder or s3://bucket/prefix"
)
_PROBE_DIR = "_write_check"
#: An ETag no object has: a write conditional on it must be refused.
_NO_SUCH_ETAG = '"00000000000000000000000000000000"'

_Write = Callable[[Any, str, bytes, "str | None"], str]


class OutputRootError(PermanentError):
    """The dataset root cannot be written: a person must fix the setting or the store."""


def check_output_root(root: str) -> None:
    """Raise OutputRootError saying what to fix unless this process can write under `root`."""
    if not str(root).strip():
        raise OutputRootError(f"The output root is empty: {_HINT}")
    protocol = fsspec.core.split_protocol(str(root))[0] or "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise OutputRootError(
            f"Output root {root!r}: unknown protocol {protocol!r}: {_HINT}"
        ) from None
    except ImportError as exc:
        raise OutputRootError(
            f"Output root {root!r} needs the filesystem package for {protocol}:// which is not "
            f"installed ({exc}); for S3 install apache-airflow-providers-amazon[s3fs]"
        ) from None
    if protocol in ("file", "local"):
        _check_local(fsspec.core.url_to_fs(str(root))[1])
    elif protocol in object_store.PROTOCOLS:
        _check_s3(str(root))
    else:
        raise OutputRootError(
            f"Output root {root!r}: {protocol}:// is not supported (no safe concurrent writes "
            f"there): {_HINT}"
        )


def _check_local(path: str) -> None:
    """The folder exists and is writable, or its nearest existing ancestor is a writable folder.

    A backslash is refused: DuckDB, which the query, report and detections read through, cannot
    list a folder whose path holds one (they would fail with "No files found" after the sync
    wrote the days).
    """
    if "\\" in path:
        raise OutputRootError(
            f"Output root {path!r} holds a backslash, which DuckDB (the query, report and "
            f"detections reader) cannot read through: choose a folder without '\\'; {_HINT}"
        )
    probe = os.path.abspath(path)
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        what = "is a file" if os.path.lexists(probe) else "does not exist"
        raise OutputRootError(
            f"Output root {path!r} cannot be created: {probe!r} {what}, not a folder; {_HINT}"
        )
    # effective ids: the ones the writer's open() and mkdir() are checked against
    if not os.access(
        probe, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids
    ):
        raise OutputRootError(
            f"Output root {path!r} is not writable: this user (uid {os.getuid()}) cannot write "
            f"to {probe!r}; fix its permissions or {_HINT}"
        )


def _check_s3(root: str) -> None:
    """Bucket reachable; a probe object can be created once and only once, then neither a PUT
    nor a multipart upload conditional on another ETag or on its absence replaces it; removed."""
    fs, path = object_store.filesystem(root)
    bucket = fs.split_path(path)[0] if path else ""
    if not bucket:
        raise OutputRootError(f"Output root {root!r} names no bucket: use s3://bucket/prefix")
    try:
        fs.call_s3("head_bucket", Bucket=bucket)
    except Exception as exc:  # every failure becomes a message that says what to do
        raise OutputRootError(_explain(root, bucket, exc, "read the bucket")) from None
    probe = f"{path.rstrip('/')}/{_PROBE_DIR}/{uuid.uuid4().hex}"
    try:
        object_store.put_if(fs, probe, b"", None)
    except Exception as exc:
        raise OutputRootError(_explain(root, bucket, exc, "create an object")) from None
    try:
        for what, write, etag in (
            ("PUT with If-None-Match: *", object_store.put_if, None),
            ("PUT with If-Match", object_store.put_if, _NO_SUCH_ETAG),
            ("CompleteMultipartUpload with If-None-Match: *", _one_part_upload, None),
            ("CompleteMultipartUpload with If-Match", _one_part_upload, _NO_SUCH_ETAG),
        ):
            _expect_refused(root, bucket, what, write, fs, probe, etag)
    finally:
        with contextlib.suppress(Exception):  # a leftover probe is harmless (not a day file)
            object_store.delete(fs, probe)


def _one_part_upload(fs: Any, path: str, data: bytes, etag: str | None) -> str:
    """A multipart upload of one small part (the last part may be any size)."""
    return object_store.multipart_upload_if(fs, path, io.BytesIO(data), etag, part_bytes=len(data))


def _expect_refused(
    root: str, bucket: str, what: str, write: _Write, fs: Any, probe: str, etag: str | None
) -> None:
    """A write of `probe` conditional on what it is not must lose, as against another writer; a
    store that ignores the condition would let concurrent writers of a day lose rows."""
    try:
        write(fs, probe, b"probe", etag)
    except object_store.WriteConflict:
        return  # refused: the store honours this condition
    except Exception as exc:
        raise OutputRootError(_explain(root, bucket, exc, "write conditionally")) from None
    raise OutputRootError(
        f"Output root {root!r}: the store ignores the condition of a {what}, so concurrent "
        "writers of a day could lose rows; use AWS S3 or an S3-compatible server that supports "
        "conditional writes (PutObject and CompleteMultipartUpload), or a local folder"
    )


def _explain(root: str, bucket: str, exc: BaseException, doing: str) -> str:
    """A message for an S3 failure: the cause class and what to change (no secrets in here)."""
    name = type(exc).__name__
    code = object_store.error_code(exc)
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        fix = (
            f"no usable AWS credentials: name an Airflow AWS connection in the Variable "
            f"'{AWS_CONN_ID_VARIABLE}', or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE or an instance/pod role for the Airflow workers"
        )
    elif isinstance(exc, FileNotFoundError) or code in ("NoSuchBucket", "404"):
        fix = f"bucket {bucket!r} does not exist: create it or fix the URL"
    elif isinstance(exc, PermissionError) or code in ("AccessDenied", "403"):
        fix = (
            f"access denied: grant s3:ListBucket, s3:GetObject, s3:PutObject and "
            f"s3:AbortMultipartUpload on {bucket!r} to the workers' credentials"
        )
    elif name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        fix = (
            "cannot reach the S3 endpoint: check AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, or the "
            "endpoint_url of the AWS connection"
        )
    else:
        fix = f"{name}{f' ({code})' if code else ''}: {exc}"
    return f"Output root {root!r}: cannot {doing}: {fix}"
