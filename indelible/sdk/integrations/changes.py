"""What a model integration records: which fields, how values become JSON, the change list.

Shared by the SQLAlchemy and Django integrations, so both record a row the same way, and the
same way ``pg-capture`` does (``docs/capture.md``):

- create: ``{field, after}`` for every recorded field; delete: ``{field, before}``;
  update: ``{field, before, after}`` for each recorded field whose value changed, nothing at
  all when none did;
- a *masked* field is recorded as changed with :data:`MASK` in place of each value, so the log
  shows that it changed and never what it was or became;
- fields in the order the model's :class:`Tracked` names them (allowed, then masked);
- the target id is the primary key as text; a key of several columns is the JSON array of
  their texts (``["acme","42"]``).
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

__all__ = [
    "MASK",
    "Tracked",
    "build_change_event",
    "changes_for",
    "json_value",
    "quantizer",
    "snake_case",
    "target_id",
]

MASK = "[masked]"
"""What a masked field's values are replaced with, before and after."""

_MAX_SAFE_INTEGER = 2**53 - 1
_TOKEN = re.compile(r"[a-z][a-z0-9_]*\Z")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def snake_case(name: str) -> str:
    """``LineItem`` → ``line_item``: the default target type of a model class."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@dataclass(frozen=True, slots=True)
class Tracked:
    """How one model is recorded.

    ``fields`` are recorded with their values; ``masked`` are recorded as changed, with
    :data:`MASK` for each value. Nothing else on the model is ever read into an event.
    Events are ``<target_type>.created`` / ``.updated`` / ``.deleted``.
    """

    target_type: str
    fields: tuple[str, ...]
    masked: frozenset[str]

    @classmethod
    def build(
        cls, *, target_type: str, fields: Iterable[str], masked: Iterable[str] = ()
    ) -> Tracked:
        """Check the names and build; raises ``ValueError`` naming what is wrong."""
        if isinstance(fields, str) or isinstance(masked, str):
            raise ValueError("fields and masked are collections of names, not one string")
        allowed, hidden = list(fields), list(masked)
        if not _TOKEN.match(target_type) or len(target_type) > 64:
            raise ValueError(
                f"target_type {target_type!r} must be a token: lowercase letters, digits and _, "
                "starting with a letter"
            )
        if not allowed and not hidden:
            raise ValueError("name at least one field to record (fields= or masked=)")
        for name in allowed + hidden:
            if not isinstance(name, str) or not _FIELD_NAME.match(name):
                raise ValueError(f"{name!r} is not a field name")
        both = sorted(set(allowed) & set(hidden))
        if both:
            raise ValueError(f"fields {both} are both allowed and masked: name each once")
        repeated = sorted({name for name in allowed + hidden if (allowed + hidden).count(name) > 1})
        if repeated:
            raise ValueError(f"fields {repeated} are named twice")
        return cls(target_type, tuple(allowed + hidden), frozenset(hidden))

    def event_type(self, action: str) -> str:
        return f"{self.target_type}.{_PAST[action]}"


_PAST = {"create": "created", "update": "updated", "delete": "deleted"}


def build_change_event(
    client: Any,
    event_type: str,
    *,
    target: dict[str, Any] | None,
    action: str,
    changes: list[dict[str, Any]],
    outcome: str = "success",
) -> tuple[dict[str, Any], bytes]:
    """The event of one change and its JSON for ``indelible_outbox``, checked in full against
    every rule (``InvalidEvent`` otherwise): through the client's ``capture_event`` (the
    envelope checked once per audit context), else its ``build_event``."""
    capture = getattr(client, "capture_event", None)
    if capture is not None:
        built, encoded = capture(
            event_type, target=target, action=action, changes=changes, outcome=outcome
        )
        return built, encoded
    built = client.build_event(
        event_type, target=target, action=action, changes=changes, outcome=outcome
    )
    return built, orjson.dumps(built)


def quantizer(places: int) -> Callable[[Any], Any]:
    """A ``Decimal`` to ``places`` digits after the point, as a column of that scale stores it
    (``Decimal("0")`` saved into a scale-2 column is ``0.00``); other values unchanged."""
    exponent = Decimal(1).scaleb(-places)

    def quantize(value: Any) -> Any:
        if isinstance(value, Decimal) and value.is_finite():
            return value.quantize(exponent)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Decimal(str(value)).quantize(exponent) if math.isfinite(value) else value
        return value

    return quantize


def changes_for(
    tracked: Tracked,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """The change list for a create (``before`` None), delete (``after`` None) or update.

    For an update, a field counts as changed when its before and after are of one type and
    unequal (``Decimal("10.5")`` equals ``Decimal("10.50")``), else when they differ as JSON;
    fields absent from either mapping are left out.
    """
    masked = tracked.masked
    out: list[dict[str, Any]] = []
    if before is None:
        assert after is not None
        for name in tracked.fields:
            if name in after:
                out.append(
                    {"field": name, "after": MASK if name in masked else json_value(after[name])}
                )
        return out
    if after is None:
        for name in tracked.fields:
            if name in before:
                out.append(
                    {"field": name, "before": MASK if name in masked else json_value(before[name])}
                )
        return out
    for name in tracked.fields:
        if name not in before or name not in after:
            continue
        raw_old, raw_new = before[name], after[name]
        if type(raw_old) is type(raw_new) and _equal(raw_old, raw_new):
            continue  # Decimal("10.5") and Decimal("10.50") are one value
        old, new = json_value(raw_old), json_value(raw_new)
        if old == new and type(old) is type(new):
            continue
        if name in masked:
            old = new = MASK
        out.append({"field": name, "before": old, "after": new})
    return out


def _equal(old: Any, new: Any) -> bool:
    try:
        return bool(old == new)
    except Exception:  # a type whose comparison raises: compare as JSON instead
        return False


def target_id(key: Sequence[Any]) -> str:
    """The primary key's text; a key of several columns as the JSON array of their texts."""
    if len(key) == 1:
        return _text(key[0])
    return orjson.dumps([_text(part) for part in key]).decode()


def _text(value: Any) -> str:
    converted = json_value(value)
    return converted if isinstance(converted, str) else orjson.dumps(converted).decode()


def json_value(value: Any) -> Any:
    """A Python value as JSON that round-trips it exactly (the table in ``docs/sdk.md``).

    Integers beyond ±(2^53 - 1), ``Decimal`` (with its scale), non-finite floats, times,
    UUIDs and anything unknown become strings; bytes become base64; enums their value.
    """
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is int:
        return value if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER else str(value)
    converter = _CONVERTERS.get(kind)
    if converter is not None:
        return converter(value)
    for base, convert in _CONVERTERS.items():
        if isinstance(value, base):
            return convert(value)
    return str(value)


def _float(value: float) -> Any:
    if not math.isfinite(value):
        return str(value)
    if value.is_integer() and abs(value) > _MAX_SAFE_INTEGER:
        return repr(value)
    return value


def _datetime(value: dt.datetime) -> str:
    if value.tzinfo is None:
        return value.isoformat()
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


def _timedelta(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    seconds = f"{value.seconds}.{value.microseconds:06d}".rstrip("0").rstrip(".")
    return f"{sign}P{value.days}DT{seconds}S"


def _mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(key): json_value(item) for key, item in value.items()}


def _sequence(value: Iterable[Any]) -> list[Any]:
    return [json_value(item) for item in value]


def _bytes(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


_CONVERTERS: dict[type[Any], Any] = {
    float: _float,
    Decimal: str,
    dt.datetime: _datetime,  # before date: a datetime is a date
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
    dt.timedelta: _timedelta,
    uuid.UUID: str,
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _bytes,
    enum.Enum: lambda member: json_value(member.value),
    int: lambda number: json_value(int(number)),  # bool is caught above; IntEnum by Enum
    str: str,
    dict: _mapping,
    list: _sequence,
    tuple: _sequence,
    set: lambda items: sorted(_sequence(items), key=orjson.dumps),
    frozenset: lambda items: sorted(_sequence(items), key=orjson.dumps),
}
