"""The event model: limits and validation of submitted events.

Strict JSON parsing lives in :mod:`indelible.core.jsonparse` and timestamps in
:mod:`indelible.core.timestamps`; both are re-exported here.

Everything here follows ``docs/formats.md`` (Event). :func:`validate_event` checks an event,
normalizes it (``occurred_at`` to millisecond ``Z`` form, ``personal`` sorted) and computes its
RFC 8785 bytes with the cheapest exact route (:mod:`indelible.core.encoding`). The usual shapes
pass a straight-line check once; the string rules (size, NUL, lone surrogates) are read off the
encoded bytes rather than string by string. Anything unusual or wrong goes to a reporting walk
that collects every violation into one :class:`~indelible.errors.InvalidEvent`.

The current time is passed in (``now_ms``); nothing here reads a clock.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from indelible import errors
from indelible.core.encoding import (
    MAX_SAFE_INTEGER,
    Route,
    canonical,
    classify,
    float_route,
    key_route,
)
from indelible.core.jsonparse import parse_batch, parse_json
from indelible.core.timestamps import format_timestamp, parse_stored_timestamp, parse_timestamp

__all__ = [
    "ACTOR_TYPES",
    "DEFAULT_LIMITS",
    "Event",
    "Limits",
    "OUTCOMES",
    "format_timestamp",
    "parse_batch",
    "parse_json",
    "parse_pointer",
    "parse_stored_timestamp",
    "parse_timestamp",
    "validate_batch",
    "validate_event",
]

ACTOR_TYPES = frozenset({"user", "service", "job", "system", "db_role"})
OUTCOMES = frozenset({"success", "failure", "denied"})
_MAX_EVENT_TYPE_BYTES = 128
_MAX_TOKEN_BYTES = 64
_POINTER_MEMO_SIZE = 4_096
_INF = float("inf")


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-event limits (``docs/formats.md``); each rejection names the field and the rule."""

    max_event_bytes: int = 262_144
    max_depth: int = 32
    max_string_bytes: int = 65_536
    max_changes: int = 1_000
    max_related: int = 100
    max_personal: int = 1_000
    max_future_ms: int = 300_000

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 4 <= self.max_depth <= 512:
            raise ValueError("max_depth must be between 4 and 512")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Event:
    """A validated, normalized event. Build it with :func:`validate_event` only.

    ``body`` is the normalized event. It is the submitted object itself when that was already
    normalized, and shares nested values with it otherwise: mutate neither afterwards.
    ``canonical`` is the RFC 8785 bytes of ``body`` and ``route`` the encoding route valid for
    ``body`` and everything inside it.
    """

    body: dict[str, Any]
    event_id: str
    occurred_at_ms: int
    canonical: bytes
    route: Route

    @property
    def personal(self) -> tuple[str, ...]:
        """The sorted JSON Pointers of the erasable values (empty when there are none)."""
        return tuple(self.body.get("personal", ()))


_SET_BODY, _SET_EVENT_ID, _SET_OCCURRED_AT_MS, _SET_CANONICAL, _SET_ROUTE = (
    Event.__dict__[name].__set__
    for name in ("body", "event_id", "occurred_at_ms", "canonical", "route")
)


def _new_event(
    body: dict[str, Any], event_id: str, occurred_at_ms: int, encoded: bytes, route: Route
) -> Event:
    """``Event(...)`` at half the cost: fills the slots directly, skipping the frozen guard."""
    event: Event = object.__new__(Event)
    _SET_BODY(event, body)
    _SET_EVENT_ID(event, event_id)
    _SET_OCCURRED_AT_MS(event, occurred_at_ms)
    _SET_CANONICAL(event, encoded)
    _SET_ROUTE(event, route)
    return event


# -- JSON Pointers -------------------------------------------------------------------------


_pointers: dict[str, tuple[str, ...] | None] = {}  # a bounded memo: pointers repeat


def parse_pointer(pointer: str) -> tuple[str, ...] | None:
    """The reference tokens of an RFC 6901 JSON Pointer, or None if it is not one."""
    try:
        return _pointers[pointer]
    except KeyError:
        tokens = _parse_pointer(pointer)
    if len(_pointers) >= _POINTER_MEMO_SIZE:
        _pointers.clear()
    _pointers[pointer] = tokens
    return tokens


def _parse_pointer(pointer: str) -> tuple[str, ...] | None:
    if not pointer.startswith("/"):
        return None
    tokens = pointer[1:].split("/")
    if "~" not in pointer:
        return tuple(tokens)
    if "~" in pointer.replace("~0", "").replace("~1", ""):
        return None
    return tuple(token.replace("~1", "/").replace("~0", "~") for token in tokens)


def _escape_token(key: str) -> str:
    if "~" in key or "/" in key:
        return key.replace("~", "~0").replace("/", "~1")
    return key


def _is_index(token: str) -> bool:
    return token.isascii() and token.isdigit() and (token == "0" or token[0] != "0")


def _resolves(doc: Any, tokens: tuple[str, ...]) -> bool:
    for token in tokens:
        if type(doc) is dict and token in doc:
            doc = doc[token]
        elif type(doc) is list and _is_index(token) and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            return False
    return True


_ERASABLE_EXACT = frozenset(
    {("actor", "name"), ("reason",), ("context", "ip"), ("context", "user_agent")}
)


def _erasable(tokens: tuple[str, ...]) -> bool:
    """Whether a pointer names a value that may be erasable (``docs/formats.md``)."""
    if tokens in _ERASABLE_EXACT:
        return True
    if tokens[0] == "data":
        return len(tokens) >= 2
    return (
        len(tokens) >= 3
        and tokens[0] == "changes"
        and _is_index(tokens[1])
        and tokens[2] in ("before", "after")
    )


# -- string formats ------------------------------------------------------------------------
#
# Formats that repeat from event to event (event types, tokens, IP addresses) are remembered
# once seen valid: a bounded memo of a pure function, so a hit costs one set lookup.

_MEMO_SIZE = 4_096
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TOKEN_REST = "abcdefghijklmnopqrstuvwxyz0123456789_"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_valid_tokens: set[str] = set()
_valid_event_types: set[str] = set()
_valid_ips: set[str] = set()


def _remember(memo: set[str], text: str) -> None:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo.add(text)


def _is_uuid(text: str) -> bool:
    """Canonical lowercase 8-4-4-4-12 UUID text (one compiled match beats slicing here)."""
    return _UUID.fullmatch(text) is not None


def _is_token(text: str) -> bool:
    """``^[a-z][a-z0-9_]*$``, at most 64 bytes, without a regular expression."""
    if text in _valid_tokens:
        return True
    if not (0 < len(text) <= _MAX_TOKEN_BYTES and text[0] in _LOWER and text.isascii()):
        return False
    if text.strip(_TOKEN_REST):
        return False
    _remember(_valid_tokens, text)
    return True


def _is_event_type(text: str) -> bool:
    """``^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$``, at most 128 bytes."""
    if text in _valid_event_types:
        return True
    if len(text) > _MAX_EVENT_TYPE_BYTES or "." not in text:
        return False
    if not all(_is_token(part) for part in text.split(".")):
        return False
    _remember(_valid_event_types, text)
    return True


def _is_ip(text: str) -> bool:
    """IPv4 dotted quad (no leading zeros) or IPv6 text without a zone."""
    if text in _valid_ips:
        return True
    parts = text.split(".")
    if len(parts) == 4 and ":" not in text:
        valid = all(_is_index(part) and len(part) <= 3 and int(part) <= 255 for part in parts)
    else:
        valid = ":" in text and "%" not in text and _is_ipv6(text)
    if valid:
        _remember(_valid_ips, text)
    return valid


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


# -- validation ----------------------------------------------------------------------------

_VALUE_TYPES = "must be a JSON value (object, array, string, number, boolean or null)"
_REENCODED_NUL = b"\\u0000"
_JCS_DIRECT = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER  # as encoding.canonical
# Deleting every byte below 0xEE leaves the UTF-8 lead bytes of characters >= U+E000.
_BELOW_E000_LEAD = bytes(range(0xEE))


def _child(field: str, key: str) -> str:
    return f"{field}/{_escape_token(key)}"


class _Check:
    """One validation walk: the violations found so far and the encoding route needed.

    The shape walk checks types, formats, limits and numbers. The string rules (size, NUL,
    lone surrogates) are checked once, on the encoded event (:func:`_encode`); only when that
    finds a suspect does :meth:`strings` walk every string to name the fields.
    """

    __slots__ = ("errors", "limits", "now_ms", "occurred_ms", "occurred_text", "route")

    def __init__(self, limits: Limits, now_ms: int) -> None:
        self.errors: list[errors.FieldError] = []
        self.limits = limits
        self.now_ms = now_ms
        self.occurred_ms = 0
        self.occurred_text = ""
        self.route = Route.DIRECT

    def fail(self, field: str, rule: str, message: str) -> None:
        self.errors.append(errors.FieldError(field=field, rule=rule, message=message))

    def string(self, value: Any, field: str) -> bool:
        if type(value) is str:
            return True
        self.fail(field, "type", "must be a string")
        return False

    def fixed(self, value: Any, field: str, shape: _Shape) -> None:
        """Check an object of a fixed shape: known keys, required keys, each field's rule."""
        if type(value) is not dict:
            self.fail(field, "type", "must be an object")
            return
        if not shape.keys.issuperset(value):
            self.unknown(value, field, shape.keys)
        for key in shape.required:
            if key not in value:
                self.fail(f"{field}/{key}", "required", "is required")
        rules = shape.rules
        for key, item in value.items():
            rule = rules.get(key)
            if rule is not None:
                rule(self, item, f"{field}/{key}")

    def unknown(self, obj: dict[Any, Any], field: str, known: frozenset[str]) -> None:
        for key in obj:
            if type(key) is not str:
                self.fail(field, "type", "object keys must be strings")
            elif key not in known:
                self.fail(_child(field, key), "unknown_field", "is not a known field")

    def array(self, value: Any, field: str, maximum: int) -> list[Any]:
        """``value`` if it is an array of at most ``maximum`` items; otherwise report, []."""
        if type(value) is not list:
            self.fail(field, "type", "must be an array")
            return []
        if len(value) > maximum:
            self.fail(field, "max_items", f"has {len(value)} items; the limit is {maximum}")
            return []
        return value

    # free-form JSON: data, changes[].before, changes[].after

    def walk(self, value: Any, field: str, depth: int) -> None:
        """Check any JSON value; ``depth`` is the nesting level it has if a container."""
        kind = type(value)
        if kind is not dict and kind is not list:
            if kind is not str:
                self.scalar(value, field)
        elif depth > self.limits.max_depth:
            self.fail(field, "max_depth", f"nests deeper than {self.limits.max_depth} levels")
        elif kind is dict:
            self.members(value, field, depth)
        else:
            for index, item in enumerate(value):
                kind = type(item)
                if kind is not str and kind is not bool and item is not None:
                    self.walk(item, f"{field}/{index}", depth + 1)

    def members(self, obj: dict[Any, Any], field: str, depth: int) -> None:
        for key, item in obj.items():
            if type(key) is not str:
                self.fail(field, "type", "object keys must be strings")
            elif not key.isascii() and key_route(key) is Route.REFERENCE:
                self.route = Route.REFERENCE
            kind = type(item)
            if kind is not str and kind is not bool and item is not None:
                self.walk(item, _child(field, str(key)), depth + 1)

    def scalar(self, value: Any, field: str) -> None:
        kind = type(value)
        if kind is int:
            if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                self.fail(field, "integer_range", "must be within +-(2^53 - 1)")
        elif kind is float:
            self.number(value, field)
        elif not (value is None or kind is bool):
            self.fail(field, "type", _VALUE_TYPES)

    def number(self, value: float, field: str) -> None:
        route = float_route(value)
        if route is Route.REFERENCE:
            self.fail(field, "not_finite", "must be a finite number (no NaN or Infinity)")
        elif value.is_integer() and abs(value) > MAX_SAFE_INTEGER:
            self.fail(field, "integer_range", "an integral number must be within +-(2^53 - 1)")
        elif route > self.route:
            self.route = route

    # the string rules, field by field

    def strings(self, value: Any, field: str, depth: int) -> None:
        """Walk every key and string (to ``max_depth``), reporting each string-rule violation."""
        kind = type(value)
        if kind is str:
            self.text(value, field, "")
        elif depth > self.limits.max_depth:
            return
        elif kind is dict:
            for key, item in value.items():
                if type(key) is str:
                    self.text(key, _child(field, key), "the key ")
                    self.strings(item, _child(field, key), depth + 1)
        elif kind is list:
            for index, item in enumerate(value):
                self.strings(item, f"{field}/{index}", depth + 1)

    def text(self, value: str, field: str, what: str) -> None:
        try:
            size = len(value.encode())
        except UnicodeEncodeError:
            self.fail(field, "lone_surrogate", f"{what}contains a lone surrogate")
            size = len(value.encode(errors="surrogatepass"))
        limit = self.limits.max_string_bytes
        if size > limit:
            self.fail(field, "max_length", f"{what}is {size} bytes of UTF-8; the limit is {limit}")
        if "\x00" in value:
            self.fail(field, "nul_character", f"{what}contains a NUL character")


Rule = Callable[[_Check, Any, str], None]


@dataclass(frozen=True, slots=True)
class _Shape:
    rules: dict[str, Rule]
    required: tuple[str, ...]
    keys: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", frozenset(self.rules))


def _string(check: _Check, value: Any, field: str) -> None:
    check.string(value, field)


def _identifier(check: _Check, value: Any, field: str) -> None:
    if check.string(value, field) and not value:
        check.fail(field, "format", "must not be empty")


def _token(check: _Check, value: Any, field: str) -> None:
    if check.string(value, field) and not _is_token(value):
        check.fail(field, "format", "must match ^[a-z][a-z0-9_]*$, at most 64 bytes")


def _actor_type(check: _Check, value: Any, field: str) -> None:
    if check.string(value, field) and value not in ACTOR_TYPES:
        check.fail(field, "enum", "must be one of: " + ", ".join(sorted(ACTOR_TYPES)))


def _outcome(check: _Check, value: Any, field: str) -> None:
    if check.string(value, field) and value not in OUTCOMES:
        check.fail(field, "enum", "must be one of: " + ", ".join(sorted(OUTCOMES)))


def _any(check: _Check, value: Any, field: str) -> None:
    check.walk(value, field, 4)


def _ip(check: _Check, value: Any, field: str) -> None:
    if check.string(value, field) and not _is_ip(value):
        check.fail(field, "format", "must be an IPv4 or IPv6 address")


def _event_id(check: _Check, value: Any, field: str) -> None:
    if check.string(value, field) and not _is_uuid(value):
        check.fail(field, "format", "must be a UUID in lowercase 8-4-4-4-12 form")


def _event_type(check: _Check, value: Any, field: str) -> None:
    if check.string(value, field) and not _is_event_type(value):
        message = "must be dotted lowercase tokens (invoice.voided), at most 128 bytes"
        check.fail(field, "format", message)


def _occurred_at(check: _Check, value: Any, field: str) -> None:
    if not check.string(value, field):
        return
    try:
        ms = parse_timestamp(value)
    except ValueError as exc:
        check.fail(field, "format", f"must be an RFC 3339 UTC timestamp: {exc}")
        return
    check.occurred_ms = ms
    check.occurred_text = value if len(value) == 24 and value[23] == "Z" else format_timestamp(ms)
    ahead = ms - check.now_ms
    if ahead > check.limits.max_future_ms:
        message = f"is {ahead} ms in the future; the limit is {check.limits.max_future_ms} ms"
        check.fail(field, "future_timestamp", message)


_ACTOR = _Shape({"id": _identifier, "type": _actor_type, "name": _string}, ("id", "type"))
_REFERENCE = _Shape({"type": _token, "id": _identifier}, ("type", "id"))
_CONTEXT = _Shape(
    {
        "ip": _ip,
        "user_agent": _string,
        "request_id": _string,
        "session_id": _string,
        "source": _token,
    },
    (),
)
_CHANGE = _Shape({"field": _identifier, "before": _any, "after": _any}, ("field",))


def _actor(check: _Check, value: Any, field: str) -> None:
    check.fixed(value, field, _ACTOR)


def _target(check: _Check, value: Any, field: str) -> None:
    check.fixed(value, field, _REFERENCE)


def _context(check: _Check, value: Any, field: str) -> None:
    check.fixed(value, field, _CONTEXT)


def _related(check: _Check, value: Any, field: str) -> None:
    for index, item in enumerate(check.array(value, field, check.limits.max_related)):
        check.fixed(item, f"{field}/{index}", _REFERENCE)


def _changes(check: _Check, value: Any, field: str) -> None:
    for index, item in enumerate(check.array(value, field, check.limits.max_changes)):
        check.fixed(item, f"{field}/{index}", _CHANGE)


def _data(check: _Check, value: Any, field: str) -> None:
    if type(value) is not dict:
        check.fail(field, "type", "must be an object")
    else:
        check.walk(value, field, 2)


def _later(check: _Check, value: Any, field: str) -> None:
    """``personal`` is checked after the walk, against the whole event."""


_EVENT = _Shape(
    {
        "event_id": _event_id,
        "event_type": _event_type,
        "occurred_at": _occurred_at,
        "actor": _actor,
        "action": _token,
        "outcome": _outcome,
        "target": _target,
        "related": _related,
        "reason": _string,
        "context": _context,
        "changes": _changes,
        "data": _data,
        "personal": _later,
    },
    ("event_id", "event_type", "occurred_at", "actor", "action", "outcome"),
)


def _personal(check: _Check, event: dict[str, Any]) -> list[str]:
    """Check ``personal`` against the event; return its pointers sorted."""
    pointers = check.array(event["personal"], "/personal", check.limits.max_personal)
    first: dict[str, int] = {}
    for index, pointer in enumerate(pointers):
        field = f"/personal/{index}"
        if not check.string(pointer, field):
            continue
        problem = _pointer_problem(event, pointer)
        if problem is None and pointer in first:
            problem = f"repeats /personal/{first[pointer]}"
        if problem is None:
            first[pointer] = index
        else:
            check.fail(field, "personal_pointer", problem)
    for pointer, index in first.items():
        outer = _enclosing(pointer, first)
        if outer is not None:
            message = f"lies inside {outer}, which is also personal"
            check.fail(f"/personal/{index}", "personal_pointer", message)
    return sorted(first)


def _pointer_problem(event: dict[str, Any], pointer: str) -> str | None:
    tokens = parse_pointer(pointer)
    if tokens is None:
        return "must be a JSON Pointer (RFC 6901) such as /changes/0/before"
    if not _erasable(tokens):
        return (
            "may point only at /actor/name, /reason, /context/ip, /context/user_agent, "
            "/changes/N/before, /changes/N/after or inside /data"
        )
    if not _resolves(event, tokens):
        return "does not resolve to a value in this event"
    return None


def _enclosing(pointer: str, pointers: dict[str, int]) -> str | None:
    """A pointer in ``pointers`` naming a container of the value ``pointer`` names."""
    cut = pointer.find("/", 1)
    while cut != -1:
        if pointer[:cut] in pointers:
            return pointer[:cut]
        cut = pointer.find("/", cut + 1)
    return None


def validate_event(obj: Any, *, now_ms: int, limits: Limits = DEFAULT_LIMITS) -> Event:
    """Validate and normalize one event, or raise InvalidEvent naming every violation."""
    accepted = _accept(obj, now_ms, limits) if type(obj) is dict else None
    if accepted is not None:
        occurred_ms, occurred_text, route, personal = accepted
        event = _finish(obj, limits, occurred_ms, occurred_text, route, personal, False)
        if event is not None:
            return event
    return _validate_reporting(obj, now_ms, limits)


def _validate_reporting(obj: Any, now_ms: int, limits: Limits) -> Event:
    """The full walk: names every violation, or returns the Event if there are none."""
    if type(obj) is not dict:
        raise errors.InvalidEvent([errors.FieldError("", "type", "an event must be an object")])
    check = _Check(limits, now_ms)
    check.fixed(obj, "", _EVENT)
    personal = _personal(check, obj) if "personal" in obj else []
    check.strings(obj, "", 1)
    if check.errors:
        raise errors.InvalidEvent(check.errors)
    event = _finish(
        obj, limits, check.occurred_ms, check.occurred_text, check.route, personal, True
    )
    if event is None:  # pragma: no cover - every rule passed; refuse rather than store it
        message = "cannot be encoded as canonical JSON"
        raise errors.InvalidEvent([errors.FieldError("", "type", message)])
    return event


def _finish(
    obj: dict[str, Any],
    limits: Limits,
    occurred_ms: int,
    occurred_text: str,
    route: Route,
    personal: list[str],
    strings_checked: bool,
) -> Event | None:
    """Normalize and encode a well-shaped event; None if its strings need the reporting walk."""
    body = obj
    if personal or "personal" in obj or obj["occurred_at"] is not occurred_text:
        body = dict(obj)
        body["occurred_at"] = occurred_text
        if personal:
            body["personal"] = personal
        else:
            body.pop("personal", None)
    encoded = _encode(body, route, limits, strings_checked)
    if encoded is None:
        return None
    if not (strings_checked or encoded.isascii()) and _may_reorder_keys(encoded, route):
        route = classify(body)  # the fast path does not look at keys; the bytes said to
        encoded = canonical(body, route)
    if len(encoded) > limits.max_event_bytes:
        size, limit = len(encoded), limits.max_event_bytes
        message = f"is {size} bytes as canonical JSON; the limit is {limit}"
        raise errors.InvalidEvent([errors.FieldError("", "max_event_bytes", message)])
    return _new_event(body, body["event_id"], occurred_ms, encoded, route)


def _may_reorder_keys(encoded: bytes, route: Route) -> bool:
    """Whether some key may hold a character at or above U+E000 (UTF-8 lead byte >= 0xEE)."""
    return route is not Route.REFERENCE and bool(encoded.translate(None, _BELOW_E000_LEAD))


def _encode(
    body: dict[str, Any], route: Route, limits: Limits, strings_checked: bool
) -> bytes | None:
    """The canonical bytes of ``body``, or None if a string (or key) may break a rule.

    No string in ``body`` is longer than its whole encoding; orjson writes a NUL as ``\\u0000``
    and refuses lone surrogates and keys that are not strings (as does the reference route).
    So a short encoding free of ``\\u0000`` needs no look at any string.
    """
    try:
        if route is Route.DIRECT:
            encoded = orjson.dumps(body, option=_JCS_DIRECT)
        else:
            encoded = canonical(body, route)
    except (ValueError, orjson.JSONEncodeError):
        return None
    if not strings_checked and (
        len(encoded) > limits.max_string_bytes or (b"\\" in encoded and _REENCODED_NUL in encoded)
    ):
        return None
    return encoded


# -- the fast accept path ------------------------------------------------------------------
#
# Most events are well formed. _accept checks one in straight-line code and returns what
# validation computes, or None at the first doubt; the reporting walk above then decides and
# names every violation. _accept may send a valid event to the walk, never the reverse.

_Accepted = tuple[int, str, Route, list[str]]
_ROUTES = tuple(Route)
_REQUIRED = frozenset(_EVENT.required)


def _accept(event: dict[str, Any], now_ms: int, limits: Limits) -> _Accepted | None:
    try:
        if not _plain_required(event):
            return None
        occurred_ms = parse_stored_timestamp(event["occurred_at"])
        if occurred_ms is None or occurred_ms - now_ms > limits.max_future_ms:
            return None
        route = _plain_optional(event, limits) if len(event) > len(_REQUIRED) else 0
        personal = _accept_personal(event, limits) if "personal" in event else []
    except (KeyError, TypeError):  # a missing key or a wrong type: let the walk report it
        return None
    if route < 0 or personal is None:
        return None
    return occurred_ms, event["occurred_at"], _ROUTES[route], personal


def _plain_required(event: dict[str, Any]) -> bool:
    """The required fields other than occurred_at (raises KeyError if one is missing)."""
    event_id, event_type, action = event["event_id"], event["event_type"], event["action"]
    outcome, actor = event["outcome"], event["actor"]
    return (
        _EVENT.keys.issuperset(event)
        and type(event_id) is str
        and _UUID.fullmatch(event_id) is not None
        and type(event_type) is str
        and (event_type in _valid_event_types or _is_event_type(event_type))
        and type(action) is str
        and (action in _valid_tokens or _is_token(action))
        and type(outcome) is str
        and outcome in OUTCOMES
        and type(actor) is dict
        and _ACTOR.keys.issuperset(actor)
        and type(actor["id"]) is str
        and actor["id"] != ""
        and type(actor["type"]) is str
        and actor["type"] in ACTOR_TYPES
        and type(actor.get("name", "")) is str
    )


def _plain_optional(event: dict[str, Any], limits: Limits) -> int:
    """The route the optional fields need, or -1 if one of them needs the reporting walk."""
    if "reason" in event and type(event["reason"]) is not str:
        return -1
    if "target" in event and not _plain_reference(event["target"]):
        return -1
    if "context" in event and not _plain_context(event["context"]):
        return -1
    if "related" in event and not _plain_related(event["related"], limits.max_related):
        return -1
    route = _plain_changes(event["changes"], limits) if "changes" in event else 0
    if route >= 0 and "data" in event:
        data = event["data"]
        needed = _plain_values(data.values(), 2, limits.max_depth) if type(data) is dict else -1
        route = -1 if needed < 0 else max(route, needed)
    return route


def _accept_personal(event: dict[str, Any], limits: Limits) -> list[str] | None:
    check = _Check(limits, 0)
    personal = _personal(check, event)
    return None if check.errors else personal


def _plain_reference(reference: Any) -> bool:
    return (
        type(reference) is dict
        and reference.keys() == _REFERENCE.keys
        and type(reference["type"]) is str
        and (reference["type"] in _valid_tokens or _is_token(reference["type"]))
        and type(reference["id"]) is str
        and reference["id"] != ""
    )


def _plain_related(related: Any, maximum: int) -> bool:
    if type(related) is not list or len(related) > maximum:
        return False
    return all(_plain_reference(reference) for reference in related)


def _plain_context(context: Any) -> bool:
    if type(context) is not dict or not _CONTEXT.keys.issuperset(context):
        return False
    for value in context.values():
        if type(value) is not str:
            return False
    ip, source = context.get("ip"), context.get("source")
    return (ip is None or ip in _valid_ips or _is_ip(ip)) and (
        source is None or source in _valid_tokens or _is_token(source)
    )


def _plain_changes(changes: Any, limits: Limits) -> int:
    if type(changes) is not list or len(changes) > limits.max_changes:
        return -1
    route = 0
    for change in changes:
        if type(change) is not dict or not _CHANGE.keys.issuperset(change):
            return -1
        field = change["field"]
        if type(field) is not str or field == "":
            return -1
        for value in change.values():
            kind = type(value)
            if kind is str or value is None or kind is bool:
                continue
            if kind is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                continue
            needed = _plain_value(value, 4, limits.max_depth)
            if needed > route:
                route = needed
            elif needed < 0:
                return -1
    return route


def _plain_value(value: Any, depth: int, max_depth: int) -> int:
    """The route a free-form value needs (keys aside), or -1 if it breaks a rule.

    ``depth`` is the nesting level of ``value`` if it is a container.
    """
    kind = type(value)
    if kind is float:
        needed = float_route(value)
        if needed is Route.REFERENCE or (value.is_integer() and abs(value) > MAX_SAFE_INTEGER):
            return -1
        return int(needed)
    if depth > max_depth:
        return -1
    if kind is dict:
        return _plain_values(value.values(), depth, max_depth)
    if kind is list:
        return _plain_values(value, depth, max_depth)
    return -1


def _plain_values(values: Iterable[Any], depth: int, max_depth: int) -> int:
    """The route the members of a container at nesting level ``depth`` need, or -1."""
    route = 0
    for item in values:
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return -1
        if kind is float and 1e-5 <= abs(item) < _INF and not item.is_integer():
            continue  # finite, not integral: orjson prints it as JCS does
        needed = _plain_value(item, depth + 1, max_depth)
        if needed > route:
            route = needed
        elif needed < 0:
            return -1
    return route


def validate_batch(
    items: Iterable[Any], *, now_ms: int, limits: Limits = DEFAULT_LIMITS
) -> list[Event]:
    """Validate every item; raise one InvalidEvent whose errors carry their item's index."""
    events: list[Event] = []
    failures: list[errors.FieldError] = []
    for index, item in enumerate(items):
        try:
            events.append(validate_event(item, now_ms=now_ms, limits=limits))
        except errors.InvalidEvent as exc:
            failures.extend(replace(error, index=index) for error in exc.errors)
    if failures:
        raise errors.InvalidEvent(failures)
    return events
