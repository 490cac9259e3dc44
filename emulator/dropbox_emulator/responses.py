"""The one response type every layer returns, and Dropbox's body shapes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

JSON = "application/json"  # exactly this: the SDK asserts the Content-Type string
TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
NDJSON = "application/x-ndjson"


@dataclass
class Response:
    """An HTTP answer. Large bodies may come as `chunks` (written one by one) instead."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: Iterable[bytes] | None = None
    length: int | None = None  # required with chunks

    def content_length(self) -> int:
        if self.chunks is not None and self.length is not None:
            return self.length
        return len(self.body)


def dumps(obj: object) -> bytes:
    """Small bodies the way Dropbox writes them (`{"error": "...", ...}`, spaced separators);
    pages are assembled from pre-serialized compact events instead."""
    return json.dumps(obj, ensure_ascii=False).encode()


def json_response(obj: object, status: int = 200) -> Response:
    body = obj if isinstance(obj, bytes) else dumps(obj)
    return Response(status, body, JSON)


def text_response(text: str, status: int = 400) -> Response:
    return Response(status, text.encode(), TEXT)


def html_response(body: bytes, status: int = 200) -> Response:
    return Response(status, body, HTML)


def route_error(tag: str, status: int = 409, **fields: object) -> Response:
    """A route error as Dropbox sends it: `{"error_summary": "tag/..", "error": {...}}`."""
    error: dict[str, object] = {".tag": tag, **fields}
    return json_response({"error_summary": f"{tag}/..", "error": error}, status)


def bad_input(route: str, message: str) -> Response:
    """HTTP 400 with Dropbox's plain-text body for bad arguments."""
    return text_response(f'Error in call to API function "{route}": {message}', 400)
