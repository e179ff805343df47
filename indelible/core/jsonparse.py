"""Strict JSON: what Indelible accepts as a document or a batch of events.

RFC 8259 with the I-JSON restrictions (RFC 7493): valid UTF-8 without a byte order mark, no
NaN or Infinity, no lone surrogate escapes, no duplicate keys at any depth, nothing trailing.
A batch is one object, an array of objects, or NDJSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson

from indelible import errors

__all__ = ["MAX_PARSE_DEPTH", "parse_batch", "parse_json"]

MAX_PARSE_DEPTH = 1024  # orjson's own nesting limit


def parse_json(raw: bytes, *, max_bytes: int) -> Any:
    """Parse one strict JSON document (RFC 8259 + I-JSON).

    Rejects invalid UTF-8, a byte order mark, NaN and Infinity, lone surrogate escapes,
    duplicate keys at any depth and trailing content (:class:`~indelible.errors.MalformedJSON`,
    with the position where known), and documents over ``max_bytes`` or nested deeper than
    1,024 levels (:class:`~indelible.errors.LimitExceeded`).
    """
    _check_size(len(raw), max_bytes, "max_bytes")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("depth limit"):
            raise _too_deep() from None
        raise errors.MalformedJSON(f"malformed JSON: {exc}") from None
    if _may_have_duplicate_keys(raw, value):
        _find_duplicate_key(raw)
    return value


def parse_batch(
    raw: bytes, *, max_bytes: int, max_items: int, ndjson: bool | None = None
) -> list[Any]:
    """Parse a request body holding one event, a JSON array of events, or NDJSON.

    With ``ndjson=None`` the body is NDJSON when it has more than one non-empty line and its
    first non-empty line parses on its own as a JSON object. Items are returned unvalidated.
    """
    _check_size(len(raw), max_bytes, "max_bytes")
    if ndjson is None:
        ndjson = _looks_like_ndjson(raw)
    if ndjson:
        lines = list(_nonempty_lines(raw))
        _check_items(len(lines), max_items)
        return [_parse_line(number, line, max_bytes) for number, line in lines]
    value = parse_json(raw, max_bytes=max_bytes)
    items = value if type(value) is list else [value]
    _check_items(len(items), max_items)
    return items


def _nonempty_lines(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """The non-empty lines of an NDJSON body with their 1-based line numbers."""
    for number, part in enumerate(raw.split(b"\n"), 1):
        line = part.strip(b" \t\r")
        if line:
            yield number, line


def _parse_line(number: int, line: bytes, max_bytes: int) -> Any:
    try:
        return parse_json(line, max_bytes=max_bytes)
    except errors.MalformedJSON as exc:
        raise errors.MalformedJSON(f"line {number}: {exc.message}") from None


def _looks_like_ndjson(raw: bytes) -> bool:
    lines = _nonempty_lines(raw)
    first, second = next(lines, None), next(lines, None)
    if first is None or second is None:
        return False
    try:
        return type(orjson.loads(first[1])) is dict
    except orjson.JSONDecodeError:
        return False


def _check_size(size: int, maximum: int, limit: str) -> None:
    if size > maximum:
        raise errors.LimitExceeded(
            f"the body is {size} bytes; the limit is {maximum}",
            limit=limit,
            maximum=maximum,
            actual=size,
        )


def _check_items(count: int, maximum: int) -> None:
    if count > maximum:
        raise errors.LimitExceeded(
            f"the batch holds {count} items; the limit is {maximum}",
            limit="max_items",
            maximum=maximum,
            actual=count,
        )


def _too_deep() -> errors.LimitExceeded:
    return errors.LimitExceeded(
        f"JSON is nested deeper than {MAX_PARSE_DEPTH} levels",
        limit="max_depth",
        maximum=MAX_PARSE_DEPTH,
    )


def _may_have_duplicate_keys(raw: bytes, value: Any) -> bool:
    """A cheap test that never misses a duplicate key (it may report one that is not there).

    Every ``:`` byte in ``raw`` is a key separator or a literal ``:`` inside a string, and
    orjson re-serializes ``value`` with exactly one ``:`` per surviving key and every ``:``
    character of every string written literally. A duplicate key drops an entry, so the
    counts differ — unless a ``:`` written as ``\\u003a`` makes up for it, which is checked.
    """
    if b"\\u003a" in raw or b"\\u003A" in raw:
        return True
    try:
        again = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels)
        return True
    return raw.count(b":") != again.count(b":")


def _find_duplicate_key(raw: bytes) -> None:
    """Parse again, slowly, raising MalformedJSON at the first duplicate key."""

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise errors.MalformedJSON(f"malformed JSON: duplicate key {json.dumps(key)}")
            seen.add(key)
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=pairs_hook)
    except RecursionError:
        raise _too_deep() from None
