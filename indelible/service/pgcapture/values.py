"""How a captured column value becomes a JSON value in an event (docs/capture.md, Values).

The relay reads every captured value as its type's output function writes it (``format('%s')``,
not a cast to text, which trims ``char(n)`` and spells booleans out), in a session pinned to
``DateStyle=ISO``, ``TimeZone=UTC``, ``IntervalStyle=iso_8601``, ``extra_float_digits=1``
(shortest exact floats) and ``bytea_output=hex``, so the text is the same whatever the writing
session's settings were. Each column has a *kind*, fixed at install time from its base type;
:func:`encode` turns the text into JSON by that kind so that the value round-trips exactly:

========== ===================================================================================
kind       JSON
========== ===================================================================================
int        a number within +-(2^53 - 1), else the decimal digits as a string
numeric    the decimal text as a string (``"12.50"``: scale kept, no float rounding)
float      a number; ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, ``"-0"`` and integral values
           beyond +-(2^53 - 1) as their text
bool       true / false
bytea      standard base64 (RFC 4648, padded)
timestamptz ``2026-01-02T03:04:05.123456Z`` (UTC, the stored precision); ``infinity`` and BC
           dates as PostgreSQL writes them
timestamp  ``2026-01-02T03:04:05.123456`` (no zone, as stored)
json       the JSON value itself, unless it holds a number JSON cannot carry exactly or a
           repeated key (``json`` keeps them): then its text, as a string
text       the text as is: text, varchar, char (padding kept), date, time, interval (ISO 8601),
           uuid, enums, arrays, ranges, network types and every other type
========== ===================================================================================

SQL NULL is JSON null. Nothing here touches a database.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from indelible.core.encoding import MAX_SAFE_INTEGER

__all__ = ["KINDS", "encode", "kind_of"]

KINDS = ("int", "numeric", "float", "bool", "bytea", "timestamptz", "timestamp", "json", "text")

_BASE_KINDS = {
    "int2": "int",
    "int4": "int",
    "int8": "int",
    "oid": "int",
    "numeric": "numeric",
    "float4": "float",
    "float8": "float",
    "bool": "bool",
    "bytea": "bytea",
    "timestamptz": "timestamptz",
    "timestamp": "timestamp",
    "json": "json",
    "jsonb": "json",
}
_TIMESTAMPTZ = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)\+00")
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)")
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})


def kind_of(base_type: str, base_schema: str) -> str:
    """The kind of a column whose (domain-resolved) base type is ``base_schema.base_type``."""
    if base_schema != "pg_catalog":
        return "text"
    return _BASE_KINDS.get(base_type, "text")


def encode(kind: str, text: str | None) -> Any:
    """The JSON value of one column value, given PostgreSQL's text output of it."""
    if text is None:
        return None
    return _ENCODERS[kind](text)


def _int(text: str) -> Any:
    value = int(text)
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else text


def _float(text: str) -> Any:
    if text in _FLOAT_WORDS:
        return text
    value = float(text)
    if value == 0 and text.startswith("-"):
        return text  # JSON (RFC 8785) writes -0 as 0
    if value.is_integer() and abs(value) > MAX_SAFE_INTEGER:
        return text
    return value


def _bool(text: str) -> bool:
    if text not in ("t", "f"):
        raise ValueError(f"not a boolean: {text!r}")
    return text == "t"


def _bytea(text: str) -> str:
    if not text.startswith("\\x"):
        raise ValueError("bytea text is not in hex form (bytea_output must be hex)")
    return base64.b64encode(bytes.fromhex(text[2:])).decode("ascii")


def _timestamptz(text: str) -> str:
    found = _TIMESTAMPTZ.fullmatch(text)
    return f"{found[1]}T{found[2]}Z" if found else text


def _timestamp(text: str) -> str:
    found = _TIMESTAMP.fullmatch(text)
    return f"{found[1]}T{found[2]}" if found else text


class _NotExact(ValueError):
    """A JSON document that an event cannot carry exactly."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _NotExact("repeated key")
    return obj


def _number(text: str) -> Any:
    try:
        exact = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - json only hands over numbers
        raise _NotExact(text) from exc
    value = float(exact)
    if value != value or value in (float("inf"), float("-inf")) or Decimal(repr(value)) != exact:
        raise _NotExact(text)
    if value.is_integer() and abs(value) > MAX_SAFE_INTEGER:
        raise _NotExact(text)
    return value


def _safe_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise _NotExact(text)
    return value


def _constant(text: str) -> Any:
    raise _NotExact(text)


def _json(text: str) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_float=_number,
            parse_int=_safe_int,
            parse_constant=_constant,
        )
    except (_NotExact, RecursionError):
        return text


_ENCODERS: dict[str, Callable[[str], Any]] = {
    "int": _int,
    "numeric": str,
    "float": _float,
    "bool": _bool,
    "bytea": _bytea,
    "timestamptz": _timestamptz,
    "timestamp": _timestamp,
    "json": _json,
    "text": str,
}
