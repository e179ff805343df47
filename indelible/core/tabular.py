"""Tabular output: CSV cells a terminal or spreadsheet never interprets, and their escaping.

Stored values are verbatim: CR, LF, ANSI escape sequences and other control characters are
legal in events (``docs/formats.md``, Event). CSV output must not let them act, so every cell
goes through :func:`escape_control`, a reversible escaping:

* a backslash is doubled (``\\`` → ``\\\\``);
* each C0 control (U+0000 to U+001F), DEL (U+007F) and C1 control (U+0080 to U+009F) becomes
  ``\\xHH`` with lowercase hex (CR → ``\\x0d``, ESC → ``\\x1b``);
* the line and paragraph separators U+2028 and U+2029 become ``\\u2028`` and ``\\u2029``.

Nothing else changes, and :func:`unescape_control` is its exact inverse: it accepts exactly the
texts :func:`escape_control` can write and raises ``ValueError`` on anything else (a stray or
unknown escape, a raw control character). A record therefore always fits on one physical line.

Cells are then guarded against formula injection (OWASP "CSV Injection"): a cell starting with
``=``, ``+``, ``-``, ``@``, tab or CR is prefixed with a single quote ``'``, so a spreadsheet
shows it as text, unless the whole cell is a plain JSON number (``-5``, ``-1.5e-7``), which a
spreadsheet reads as that number. (Escaping already turns a leading tab or CR into ``\\x09`` or
``\\x0d``; the guard lists them anyway so that it holds on its own.)

Records follow RFC 4180: fields quoted only when needed, CRLF line ends.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from indelible.core.encoding import canonical
from indelible.core.replay import MISSING

__all__ = [
    "CSV_COLUMNS",
    "csv_cell",
    "csv_header",
    "csv_line",
    "csv_row",
    "escape_control",
    "unescape_control",
]

CSV_COLUMNS: tuple[str, ...] = (
    "seq",
    "received_at",
    "event_id",
    "event_type",
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_name",
    "target_type",
    "target_id",
    "action",
    "outcome",
    "reason",
    "ip",
    "user_agent",
    "request_id",
    "session_id",
    "source",
    "related",
    "changes",
    "data",
    "leaf_hash",
)

# Where each event column is found in the event; seq, received_at and leaf_hash are given.
_EVENT_PATHS: dict[str, tuple[str, ...]] = {
    "event_id": ("event_id",),
    "event_type": ("event_type",),
    "occurred_at": ("occurred_at",),
    "actor_type": ("actor", "type"),
    "actor_id": ("actor", "id"),
    "actor_name": ("actor", "name"),
    "target_type": ("target", "type"),
    "target_id": ("target", "id"),
    "action": ("action",),
    "outcome": ("outcome",),
    "reason": ("reason",),
    "ip": ("context", "ip"),
    "user_agent": ("context", "user_agent"),
    "request_id": ("context", "request_id"),
    "session_id": ("context", "session_id"),
    "source": ("context", "source"),
    "related": ("related",),
    "changes": ("changes",),
    "data": ("data",),
}

_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
_ESCAPES: dict[int, str] = {
    ord("\\"): "\\\\",
    **{code: f"\\x{code:02x}" for code in _CONTROLS},
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
_UNESCAPES = {escaped[1:]: chr(code) for code, escaped in _ESCAPES.items()}
_NEEDS_ESCAPE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A backslash with the escape it starts (group 1, empty if none is valid), or a raw character
# that escape_control never leaves (group 1 is None).
_ESCAPE_OR_RAW = re.compile(
    r"\\(\\|x(?:[01][0-9a-f]|7f|[89][0-9a-f])|u202[89]|)|[\x00-\x1f\x7f-\x9f\u2028\u2029]"
)
_FORMULA_STARTS = frozenset("=+-@\t\r")
_JSON_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def escape_control(text: str) -> str:
    """``text`` with backslashes doubled and control characters written as escapes."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return text.translate(_ESCAPES)


def unescape_control(text: str) -> str:
    """The text :func:`escape_control` turned into ``text``; ValueError if there is none."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return _ESCAPE_OR_RAW.sub(_unescape_one, text)


def _unescape_one(match: re.Match[str]) -> str:
    escape = match.group(1)
    if escape is None:
        raise ValueError(f"raw control character {match.group()!r} at index {match.start()}")
    if not escape:
        raise ValueError(f"malformed escape at index {match.start()}")
    return _UNESCAPES[escape]


def csv_cell(value: Any) -> str:
    """One CSV cell: ``""`` for None or :data:`MISSING`, a string as is, other JSON as JCS text.

    Then escaped (:func:`escape_control`) and guarded against formula injection. Raises
    ``ValueError`` for a value that is not JSON.
    """
    if value is None or value is MISSING:
        return ""
    text = value if type(value) is str else canonical(value).decode()
    cell = escape_control(text)
    if cell[:1] in _FORMULA_STARTS and _JSON_NUMBER.fullmatch(cell) is None:
        return "'" + cell
    return cell


def csv_row(seq: int, received_at: str, leaf_hash_hex: str, event: Mapping[str, Any]) -> list[str]:
    """The cells of one entry, one per :data:`CSV_COLUMNS`; ``""`` where a value is absent."""
    given = {"seq": seq, "received_at": received_at, "leaf_hash": leaf_hash_hex}
    return [
        csv_cell(given[column] if column in given else _lookup(event, _EVENT_PATHS[column]))
        for column in CSV_COLUMNS
    ]


def _lookup(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``event``, or None where a step is missing or not an object."""
    value: Any = event
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def csv_line(cells: Sequence[str]) -> str:
    """One RFC 4180 record: fields quoted only when needed, ended by CRLF."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerow(cells)
    return buffer.getvalue()


def csv_header() -> str:
    """The header record: :data:`CSV_COLUMNS`."""
    return csv_line(CSV_COLUMNS)
