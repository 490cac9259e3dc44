"""Opt-in pseudonymisation at write time: emails and IP addresses -> keyed HMAC-SHA256 tokens.

The dataset names people. Teams that must not keep raw identifiers (or that hand the dataset to
analysts who need "the same person" but not "which person") turn this on with a secret key. The
same key always maps the same value to the same token, so joins and counts per user/IP still work
across runs, days and datasets; without the key a token cannot be reversed or recomputed from a
guessed email.

What is replaced, in every column that can hold it:
- `actor_email`, `ip_address`;
- inside the JSON columns (`assets`, `participants`, `details`, `raw_event`): every string value
  that is a whole email address or IP address (wherever it sits: `email`, `reseller_email`,
  `invitees`, `user_identifier`, `ip_address`, ...).
`raw_event` is pseudonymised too (otherwise the raw copy would hold everything the columns hide):
such a dataset is no longer lossless for those values, and rows that changed are re-serialised.
Names, account ids and file paths are kept (see docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa

from dropbox_team_log.settings import PSEUDONYMISE_KEY_VARIABLE

#: The Variable holding the key, or `conn:<conn_id>` (the key is that connection's password).
MIN_KEY_LENGTH = 16
TOKEN_PREFIX = "hmac:"  # ruff: ignore[hardcoded-password-string] - a marker, not a secret
_TOKEN_HEX = 32  # 128 bits of the HMAC: collisions are negligible, tokens stay short
_EMAIL_RE = re.compile(r"[^@\s\"<>]+@[^@\s\"<>]+\.[^@\s\"<>]+")
_PLAIN_COLUMNS = ("actor_email", "ip_address")
_JSON_COLUMNS = ("assets", "participants", "details", "raw_event")


class PseudonymiseKeyError(ValueError):
    """The key is unusable; the message says how to fix it (never shows the key)."""


class Pseudonymiser:
    """Replaces emails and IP addresses in event batches with stable keyed tokens."""

    def __init__(self, key: str | bytes) -> None:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        if len(raw.strip()) < MIN_KEY_LENGTH:
            raise PseudonymiseKeyError(
                f"the pseudonymisation key must be at least {MIN_KEY_LENGTH} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        self._key = raw.strip()

    def __repr__(self) -> str:  # the key never shows, even in a traceback
        return "Pseudonymiser(key=***)"

    def token(self, kind: str, value: str) -> str:
        """`hmac:<hex>` for one normalised value; `kind` separates emails from IPs."""
        mac = hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256)
        return TOKEN_PREFIX + mac.hexdigest()[:_TOKEN_HEX]

    def value(self, text: str) -> str | None:
        """The token for an email or IP address; None when `text` is neither."""
        if text.startswith(TOKEN_PREFIX):
            return None  # already a token: pseudonymising twice must change nothing
        if "@" in text and _EMAIL_RE.fullmatch(text):
            return self.token("email", text.lower())
        if (":" in text or "." in text) and len(text) <= 45:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                return None
            return self.token("ip", address.compressed)
        return None

    def _walk(self, node: Any) -> tuple[Any, bool]:
        if isinstance(node, str):
            token = self.value(node)
            return (node, False) if token is None else (token, True)
        if isinstance(node, dict):
            changed = False
            for key, child in node.items():
                new, hit = self._walk(child)
                if hit:
                    node[key], changed = new, True
            return node, changed
        if isinstance(node, list):
            changed = False
            for i, child in enumerate(node):
                new, hit = self._walk(child)
                if hit:
                    node[i], changed = new, True
            return node, changed
        return node, False

    def json_text(self, text: str | None) -> str | None:
        """A JSON document with every email/IP string value replaced (unchanged if none)."""
        if text is None or ("@" not in text and "." not in text and ":" not in text):
            return text
        doc, changed = self._walk(orjson.loads(text))
        return orjson.dumps(doc).decode() if changed else text

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return pseudonymise(batch, self)


def _map_column(array: pa.Array, fn: Callable[[str | None], str | None]) -> pa.Array:
    return pa.array([fn(v) for v in array.to_pylist()], type=array.type)


def pseudonymise(batch: pa.RecordBatch, pseudonymiser: Pseudonymiser) -> pa.RecordBatch:
    """The same batch (same schema, same rows, same order) with emails and IPs tokenised."""

    def plain(value: str | None) -> str | None:
        if value is None:
            return None
        return pseudonymiser.value(value) or value

    columns = []
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        if name in _PLAIN_COLUMNS:
            array = _map_column(array, plain)
        elif name in _JSON_COLUMNS:
            array = _map_column(array, pseudonymiser.json_text)
        columns.append(array)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def key_from_setting(value: str | None, get_connection: Callable[[str], Any]) -> str | None:
    """The key from the Variable's value: the key itself, or `conn:<conn_id>` (its password)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.startswith("conn:"):
        conn_id = value[len("conn:") :].strip()
        conn = get_connection(conn_id)
        if not conn.password:
            raise PseudonymiseKeyError(
                f"Variable {PSEUDONYMISE_KEY_VARIABLE} points at connection '{conn_id}', whose "
                "password (the key) is empty: set the key as that connection's password"
            )
        return conn.password
    return value
