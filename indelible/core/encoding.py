"""RFC 8785 (JCS) canonical JSON: the exact bytes every leaf and commitment is built from.

Three routes produce the same bytes:

* ``Route.DIRECT`` — ``orjson`` with sorted keys. Used when the value holds no number and no
  object key on which orjson and JCS disagree. They agree on every string (both escape only
  ``"``, ``\\`` and U+0000 to U+001F, with the same short forms and lowercase ``\\u00xx``), on
  integers within +-(2^53 - 1), and on finite non-integral floats of magnitude ≥ 1e-5 (both
  print the shortest round-trip digits in plain decimal notation there).
* ``Route.FLOATS`` — the same, after each other float is replaced by a pre-rendered fragment in
  ECMAScript ``Number.prototype.toString`` form (``1.0`` → ``1``, ``-0.0`` → ``0``,
  ``1e-6`` → ``0.000001``).
* ``Route.REFERENCE`` — the ``rfc8785`` package, for keys holding characters ≥ U+E000 (JCS sorts
  keys by UTF-16 code units, orjson by code points; the two orders differ only there) and for
  anything outside the JSON domain, which it rejects.

Validation computes the route during its single walk and hands it to :func:`canonical`, so
the value is not walked twice; without a route, :func:`classify` walks it once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

import orjson
import rfc8785

__all__ = [
    "MAX_SAFE_INTEGER",
    "Route",
    "canonical",
    "canonical_reference",
    "classify",
    "float_route",
    "key_route",
    "needs_reference",
]

MAX_SAFE_INTEGER = 2**53 - 1
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_INF = math.inf
# JCS (UTF-16) and orjson (code point) key orders can differ only for keys holding a character
# at or above U+E000, the first code point above the surrogate block.
_FIRST_REORDERED = "\ue000"


class Route(IntEnum):
    """How :func:`canonical` produces the JCS bytes of a value; higher routes cost more."""

    DIRECT = 0
    FLOATS = 1
    REFERENCE = 2


_ROUTES = tuple(Route)


def float_route(x: float) -> Route:
    """The cheapest route that renders the float ``x`` exactly as JCS does."""
    if 1e-5 <= abs(x) < _INF and not x.is_integer():
        return Route.DIRECT
    return Route.FLOATS if math.isfinite(x) else Route.REFERENCE


def key_route(key: str) -> Route:
    """The cheapest route that orders an object holding ``key`` exactly as JCS does."""
    if key.isascii() or max(key, default="") < _FIRST_REORDERED:
        return Route.DIRECT
    return Route.REFERENCE


def classify(obj: Any) -> Route:
    """Walk ``obj`` once and return the cheapest route that gives its exact JCS bytes."""
    return _ROUTES[_route_of(obj)]


def _route_of(value: Any) -> int:
    kind = type(value)
    if kind is dict:
        return _members_route(value.values()) if _keys_direct(value) else Route.REFERENCE
    if kind is list:
        return _members_route(value)
    if kind is str or kind is bool or value is None:
        return Route.DIRECT
    if kind is int:
        return Route.DIRECT if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else Route.REFERENCE
    if kind is float:
        return float_route(value)
    return Route.REFERENCE


def _keys_direct(obj: dict[Any, Any]) -> bool:
    """Whether every key is a string that orjson orders as JCS does (joined: one C call)."""
    try:
        joined = "".join(obj)
    except TypeError:
        return False
    return joined.isascii() or key_route(joined) is Route.DIRECT


def _members_route(values: Iterable[Any]) -> int:
    """The route needed by the members of one container (plain ints: IntEnum is slow here)."""
    route = 0
    for item in values:
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
            continue
        if kind is float and 1e-5 <= abs(item) < _INF and not item.is_integer():
            continue
        needed = _route_of(item)
        if needed > route:
            if needed == 2:
                return 2
            route = needed
    return route


def needs_reference(obj: Any) -> bool:
    """Whether only the reference implementation gives the JCS bytes of ``obj``."""
    return classify(obj) is Route.REFERENCE


def canonical(obj: Any, route: Route | None = None) -> bytes:
    """The RFC 8785 bytes of ``obj``.

    ``route`` must come from :func:`classify` (or from validation) for this value or for a
    value containing it; without it, ``obj`` is classified first. Raises ``ValueError`` for a
    value JCS cannot represent (NaN, infinity, integers beyond +-(2^53 - 1), non-JSON types).
    """
    if route is None:
        route = classify(obj)
    if route is Route.REFERENCE:
        return canonical_reference(obj)
    if route is Route.FLOATS:
        obj = _render_floats(obj)
    try:
        return orjson.dumps(obj, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"not representable as canonical JSON: {exc}") from None


def canonical_reference(obj: Any) -> bytes:
    """The RFC 8785 bytes of ``obj`` from the ``rfc8785`` package: the slow oracle."""
    try:
        result: bytes = rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"not representable as canonical JSON: {exc}") from None
    return result


def _render_floats(obj: Any) -> Any:
    """``obj`` with each float orjson would print differently made a fragment.

    Only the containers on the way to such a float are copied; the rest is shared.
    """
    kind = type(obj)
    if kind is float:
        if float_route(obj) is Route.DIRECT:
            return obj
        return orjson.Fragment(_ecmascript_number(obj))
    if kind is dict:
        changed: dict[Any, Any] | None = None
        for key, value in obj.items():
            rendered = _render_floats(value) if type(value) in _MAY_HOLD_FLOATS else value
            if rendered is not value:
                changed = changed or dict(obj)
                changed[key] = rendered
        return obj if changed is None else changed
    if kind is list:
        copied: list[Any] | None = None
        for index, value in enumerate(obj):
            rendered = _render_floats(value) if type(value) in _MAY_HOLD_FLOATS else value
            if rendered is not value:
                copied = copied or list(obj)
                copied[index] = rendered
        return obj if copied is None else copied
    return obj


_MAY_HOLD_FLOATS = frozenset({float, dict, list})


def _ecmascript_number(x: float) -> bytes:
    """``x`` as ECMAScript ``Number.prototype.toString`` prints it (RFC 8785 §3.2.2.3)."""
    if x == 0:
        return b"0"
    sign = "-" if x < 0 else ""
    digits, point = _shortest_digits(abs(x))
    return (sign + _layout(digits, point)).encode()


def _shortest_digits(x: float) -> tuple[str, int]:
    """The shortest round-trip digits of ``x > 0`` and where the decimal point goes.

    ``x == 0.<digits> * 10**point``. ``repr`` gives the shortest correctly rounded digits,
    which is what ECMAScript requires.
    """
    mantissa, _, exponent = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    point = len(whole) + (int(exponent) if exponent else 0)
    digits = whole + fraction
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return stripped.rstrip("0"), point


def _layout(digits: str, point: int) -> str:
    """Place the decimal point or exponent the way ECMAScript does."""
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exponent = point - 1
    sign = "+" if exponent >= 0 else "-"
    head = digits if count == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(exponent)}"
