"""root_check: a root is refused before any API call unless the store keeps concurrent writers
exact: conditional PUTs and conditional multipart completions alike, on a local S3 server (moto).

The S3 refusals of a missing bucket, missing credentials and the like are in test_store_s3.py.
"""

from __future__ import annotations

import pytest

from dropbox_team_log.dataset.root_check import OutputRootError, check_output_root
from tests.dataset.test_object_store import uploads
from tests.dataset.test_store_s3 import bucket, objects, s3_endpoint

__all__ = ["bucket", "s3_endpoint"]  # fixtures


def test_a_store_that_honours_every_condition_passes_and_keeps_nothing(bucket):
    check_output_root(f"s3://{bucket}/prefix")
    assert objects(bucket) == {}
    assert uploads(bucket) == []  # the refused multipart probes were aborted


def test_a_store_that_ignores_if_match_on_multipart_completion_is_refused(bucket, monkeypatch):
    """moto as it is: it checks If-None-Match on CompleteMultipartUpload, not If-Match. A large
    day's write there could replace another writer's newer file: refused up front."""
    from moto.s3.responses import S3Response

    moto_own = S3Response._key_response_post.__wrapped__
    monkeypatch.setattr(S3Response, "_key_response_post", moto_own)
    with pytest.raises(
        OutputRootError, match="ignores the condition of a CompleteMultipartUpload with If-Match"
    ):
        check_output_root(f"s3://{bucket}/prefix")
    assert objects(bucket) == {}
    assert uploads(bucket) == []


def test_a_local_root_with_a_backslash_is_refused(tmp_path):
    with pytest.raises(OutputRootError, match="holds a backslash, which DuckDB"):
        check_output_root(str(tmp_path / "team\\log"))
    check_output_root(str(tmp_path / "team[1] *?"))  # glob characters are fine: read literally
