"""How the package shows a string that came from an event: as the characters it holds.

Anyone outside the team can name a file, a folder or an account, so an event string may carry
terminal control (escape sequences, BEL, CR/LF that forge rows) or bidi overrides that make
text read backwards. Wherever a person reads such a string (terminal tables, task logs, the
report, alerts) it goes through `visible` first: one rule for the whole package. Exports meant
for programs (`query --format csv/json`, Parquet) keep the exact data.
Only the stdlib: DAG files import this (through notifications/alerts.py) at parse time.
"""

from __future__ import annotations

from typing import Any

#: Characters that steer a terminal or the direction of text instead of showing: C0 controls,
#: DEL and C1 controls, the bidi marks, embeddings, overrides and isolates, and the Unicode
#: line and paragraph separators. Each is shown as its `\uXXXX` escape.
_STEERING = [
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    *range(0x2028, 0x202F),
    *range(0x2066, 0x206A),
]
_AS_ESCAPES = {code: f"\\u{code:04x}" for code in _STEERING}


def visible(value: Any) -> str:
    """`value` as a terminal, a log line or a page shows it: times in ISO 8601, every control
    or bidi character as its `\\uXXXX` escape (so `\\x1b[2J` prints as `\\u001b[2J`), one line."""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text.translate(_AS_ESCAPES)


#: `&`, `<` and `>` as entities: where text is read as markup (Plotly's labels and hover text,
#: a chat message's `<url|label>` and `<!channel>`), escaped, it stays the characters it is.
_MARKUP_ESCAPES = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;"}


def escape_markup(text: str) -> str:
    """`text` with the three characters that open markup or entities escaped."""
    return text.translate(_MARKUP_ESCAPES)
