"""Conditions of alert rules, compiled to plain functions of an event dict.

``when`` maps dotted field paths to conditions: a value (equal), a list (one of), or a
mapping of operators (``in``, ``not_in``, ``eq``, ``ne``, ``prefix``, ``suffix``,
``contains``, ``matches``, ``exists``, ``gt``, ``gte``, ``lt``, ``lte``), combined with
``any_of``, ``all_of`` and ``not``. A path through a list reaches every item (:class:`Many`):
the condition holds when it holds for any. Every problem is reported to a :class:`Problems`
with its place, and compiling goes on, so a document's problems are all named at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from indelible.errors import FieldError

__all__ = [
    "MISSING",
    "PATH",
    "Getter",
    "Many",
    "Problems",
    "Test",
    "compile_when",
    "getter",
    "number",
    "resolve",
    "strings",
]

PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+){0,7}")
_OPERATORS = frozenset(
    {"eq", "ne", "in", "not_in", "prefix", "suffix", "contains", "matches", "exists"}
    | {"gt", "gte", "lt", "lte"}
)


class _Missing:
    """A field the event does not have (distinct from a JSON ``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Many(tuple[Any, ...]):
    """The values a path reached through a list (``changes.field``): a condition holds when
    it holds for any of them."""

    __slots__ = ()


Getter = Callable[[Mapping[str, Any]], Any]
Test = Callable[[Mapping[str, Any]], bool]


def resolve(value: Any, keys: Sequence[str], at: int = 0) -> Any:
    """The value at ``keys`` inside ``value``; through a list, :class:`Many` of each item's."""
    for index in range(at, len(keys)):
        if type(value) is dict:
            value = value.get(keys[index], MISSING)
        elif type(value) is list:
            found: list[Any] = []
            for item in value:
                got = resolve(item, keys, index)
                if type(got) is Many:
                    found.extend(got)
                elif got is not MISSING:
                    found.append(got)
            return Many(found)
        else:
            return MISSING
    return value


def getter(path: str) -> Getter:
    """A function reading the dotted ``path`` (``actor.id``, ``changes.field``) of an event."""
    keys = tuple(path.split("."))
    if len(keys) == 1:
        key = keys[0]
        return lambda event: event.get(key, MISSING)
    if len(keys) == 2:  # actor.id, context.ip: the usual depth, read without a loop
        outer, inner = keys

        def two(event: Mapping[str, Any]) -> Any:
            value = event.get(outer, MISSING)
            if type(value) is dict:
                return value.get(inner, MISSING)
            return resolve(event, keys)

        return two
    return lambda event: resolve(event, keys)


def number(value: Any) -> float | None:
    """A number, or a string holding one (``"12.50"``: PostgreSQL numeric); else None."""
    kind = type(value)
    if kind is int or kind is float:
        return float(value)
    if kind is str:
        try:
            result = float(value)
        except ValueError:
            return None
        return result if result == result and abs(result) != float("inf") else None
    return None


class Problems:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, where: str, rule: str, message: str) -> None:
        self.errors.append(FieldError(where, rule, message))


def strings(value: Any) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


# -- conditions -----------------------------------------------------------------------------


def _always(event: Mapping[str, Any]) -> bool:
    return True


def _never(value: Any) -> bool:  # pragma: no cover - stands in for an invalid condition,
    return False  # and a document with one is refused before any event is tested


def compile_when(spec: Any, where: str, problems: Problems) -> tuple[Test, tuple[str, ...] | None]:
    """The compiled condition and the exact event types it needs (None: any type)."""
    if type(spec) is not dict:
        problems.add(where, "type", "must be a mapping of field path to condition")
        return _always, None
    tests: list[Test] = []
    types: tuple[str, ...] | None = None
    for key, condition in spec.items():
        place = f"{where}/{key}"
        if key in ("any_of", "all_of"):
            tests.append(_combined(key, condition, place, problems))
        elif key == "not":
            tests.append(_negated(compile_when(condition, place, problems)[0]))
        elif type(key) is not str or not PATH.fullmatch(key):
            problems.add(place, "path", "must be a field path such as actor.id")
        else:
            check = _matcher(condition, place, problems)
            tests.append(_field_test(key, check))
            if key == "event_type":
                types = _exact_types(condition)
    return _all(tests), types


def _negated(inner: Test) -> Test:
    return lambda event: not inner(event)


def _combined(key: str, spec: Any, where: str, problems: Problems) -> Test:
    if type(spec) is not list or not spec:
        problems.add(where, "type", "must be a non-empty list of conditions")
        return _always
    tests = [compile_when(item, f"{where}/{i}", problems)[0] for i, item in enumerate(spec)]
    if key == "all_of":
        return _all(tests)
    if len(tests) == 2:
        first, second = tests
        return lambda event: first(event) or second(event)
    if len(tests) == 3:
        first, second, third = tests
        return lambda event: first(event) or second(event) or third(event)
    return lambda event: any(test(event) for test in tests)


def _all(tests: list[Test]) -> Test:
    if not tests:
        return _always
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda event: first(event) and second(event)
    return lambda event: all(test(event) for test in tests)


def _exact_types(condition: Any) -> tuple[str, ...] | None:
    if type(condition) is str:
        return (condition,)
    if strings(condition):
        return tuple(condition)
    if type(condition) is dict and set(condition) == {"in"} and strings(condition["in"]):
        return tuple(condition["in"])
    return None


def _field_test(path: str, check: Callable[[Any], bool]) -> Test:
    if "." not in path:  # a top-level field: no list to reach through
        return lambda event: check(event.get(path, MISSING))
    get = getter(path)

    def test(event: Mapping[str, Any]) -> bool:
        value = get(event)
        if type(value) is Many:
            return any(check(item) for item in value)
        return check(value)

    return test


_Scalar = (str, int, float, bool, type(None))


def _matcher(condition: Any, where: str, problems: Problems) -> Callable[[Any], bool]:
    """A scalar means equal; a list means one of; a mapping holds operators, all of which
    must hold."""
    if isinstance(condition, _Scalar):
        return _equals(condition)
    if type(condition) is list:
        if not all(isinstance(item, _Scalar) for item in condition):
            problems.add(where, "type", "a list of values holds strings, numbers or booleans")
            return _never
        return _one_of(condition, True)
    if type(condition) is not dict or not condition:
        problems.add(where, "type", "must be a value, a list of values or operators")
        return _never
    checks = [_operator(name, arg, f"{where}/{name}", problems) for name, arg in condition.items()]
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


def _equals(wanted: Any) -> Callable[[Any], bool]:
    """Equality as JSON means it: ``true`` never equals ``1``, nor a missing field ``null``."""
    if type(wanted) is str:
        return lambda value: value == wanted  # only a string equals a string
    if wanted is None or type(wanted) is bool:
        return lambda value: value is wanted
    return lambda value: type(value) is not bool and value is not MISSING and value == wanted


def _one_of(items: list[Any], wanted: bool) -> Callable[[Any], bool]:
    hashable = [item for item in items if not isinstance(item, bool)]
    bools = [item for item in items if isinstance(item, bool)]
    members = frozenset(hashable)

    def check(value: Any) -> bool:
        if value is MISSING:
            return not wanted
        if type(value) is bool:
            return (value in bools) is wanted
        try:
            return (value in members) is wanted
        except TypeError:  # a dict or list is in no list of scalars
            return not wanted

    return check


def _operator(name: Any, arg: Any, where: str, problems: Problems) -> Callable[[Any], bool]:
    if name not in _OPERATORS:
        problems.add(where, "operator", f"unknown operator (one of {sorted(_OPERATORS)})")
        return _never
    if name in ("in", "not_in"):
        if not (type(arg) is list and all(isinstance(item, _Scalar) for item in arg)):
            problems.add(where, "type", "must be a list of values")
            return _never
        return _one_of(arg, name == "in")
    if name in ("eq", "ne"):
        equal = _matcher(arg, where, problems) if isinstance(arg, _Scalar) else None
        if equal is None:
            problems.add(where, "type", "must be a value")
            return _never
        return equal if name == "eq" else (lambda value: not equal(value))
    if name == "exists":
        if type(arg) is not bool:
            problems.add(where, "type", "must be true or false")
        return lambda value: (value is not MISSING and value is not None) is arg
    if name in ("gt", "gte", "lt", "lte"):
        return _compare(name, arg, where, problems)
    return _text_operator(name, arg, where, problems)


def _compare(name: str, arg: Any, where: str, problems: Problems) -> Callable[[Any], bool]:
    bound = number(arg) if type(arg) is not bool else None
    if bound is None:
        problems.add(where, "type", "must be a number")
        return _never
    compare: Callable[[float], bool] = {
        "gt": lambda got: got > bound,
        "gte": lambda got: got >= bound,
        "lt": lambda got: got < bound,
        "lte": lambda got: got <= bound,
    }[name]

    def check(value: Any) -> bool:
        got = number(value) if type(value) is not bool else None
        return got is not None and compare(got)

    return check


def _text_operator(name: str, arg: Any, where: str, problems: Problems) -> Callable[[Any], bool]:
    if type(arg) is not str:
        problems.add(where, "type", "must be a string")
        return _never
    if name == "matches":
        try:
            pattern = re.compile(arg)
        except re.error as exc:
            problems.add(where, "regex", f"not a regular expression: {exc}")
            return _never
        return lambda value: type(value) is str and pattern.search(value) is not None
    if name == "prefix":
        return lambda value: type(value) is str and value.startswith(arg)
    if name == "suffix":
        return lambda value: type(value) is str and value.endswith(arg)
    return lambda value: type(value) is str and arg in value
