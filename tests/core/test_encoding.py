"""RFC 8785 encoding: the fast routes give exactly the bytes of the rfc8785 oracle."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from indelible.core import encoding
from indelible.core.encoding import (
    MAX_SAFE_INTEGER,
    Route,
    canonical,
    canonical_reference,
    classify,
    float_route,
    key_route,
    needs_reference,
)

# Strings as validation admits them: any Unicode scalar value (no lone surrogates).
texts = st.text(st.characters(codec="utf-8"), max_size=12)
keys = st.one_of(texts, st.sampled_from(["\ue000", "\uffff", "\U0001f600", "\U00010000", "a"]))
safe_ints = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.none(), st.booleans(), safe_ints, finite_floats, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=600)
@given(json_values)
def test_canonical_equals_the_reference_on_every_route_it_may_take(value: Any) -> None:
    expected = rfc8785.dumps(value)
    assert canonical(value) == expected
    for route in Route:
        if route > classify(value):
            assert canonical(value, route) == expected


@settings(max_examples=3000)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_render_as_ecmascript_numbers(x: float) -> None:
    assert canonical(x) == rfc8785.dumps(x)
    assert canonical([x, {"k": x}]) == rfc8785.dumps([x, {"k": x}])


@settings(max_examples=3000)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_the_ecmascript_formatter_matches_the_reference_for_every_float(x: float) -> None:
    assert encoding._ecmascript_number(x) == rfc8785.dumps(x)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, b"1"),
        (-0.0, b"0"),
        (0.0, b"0"),
        (1e21, b"1e+21"),
        (1e20, b"100000000000000000000"),
        (1e16, b"10000000000000000"),
        (5e-324, b"5e-324"),
        (1e-6, b"0.000001"),
        (1e-7, b"1e-7"),
        (1.5e-7, b"1.5e-7"),
        (0.1, b"0.1"),
        (12.99, b"12.99"),
        (123456789012345.6, b"123456789012345.6"),
        (1.7976931348623157e308, b"1.7976931348623157e+308"),
        (-1e-5, b"-0.00001"),
        (MAX_SAFE_INTEGER, b"9007199254740991"),
        (-MAX_SAFE_INTEGER, b"-9007199254740991"),
        (True, b"true"),
        (None, b"null"),
    ],
)
def test_number_edge_cases(value: Any, expected: bytes) -> None:
    assert canonical(value) == expected == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "text",
    [
        "\u2028",
        "\u2029",
        "\x7f",
        "\x1b[31mred\x1b[0m",
        "line\r\nbreak",
        "".join(chr(c) for c in range(0x20)),
        'quote " backslash \\ slash /',
        "\ufeff\ufffe\uffff",
        "\U0001f600 \U0010ffff",
        "é ü ß 日本",
    ],
)
def test_strings_escape_exactly_as_jcs(text: str) -> None:
    assert classify(text) is Route.DIRECT
    assert canonical(text) == rfc8785.dumps(text)
    assert canonical({text: text}) == rfc8785.dumps({text: text})


def test_every_code_point_escapes_as_jcs() -> None:
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    assert canonical(everything) == rfc8785.dumps(everything)


def test_keys_sort_by_utf16_code_units() -> None:
    obj = {"\ue000": 1, "\U0001f600": 2, "a": 3, "\uffff": 4}
    assert classify(obj) is Route.REFERENCE
    expected = '{"a":3,"\U0001f600":2,"\ue000":1,"\uffff":4}'.encode()
    assert canonical(obj) == expected == rfc8785.dumps(obj)
    # orjson alone would order them by code point, which is why the route exists
    assert orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) != expected


def test_routes() -> None:
    assert classify({"a": [1, "x", None, True, 0.5]}) is Route.DIRECT
    assert classify({"a": [1.0]}) is Route.FLOATS
    assert classify({"a": 1e-6}) is Route.FLOATS
    assert classify({"\ue000": 1}) is Route.REFERENCE
    assert classify({"é": 1, "\ud7ff": 2}) is Route.DIRECT
    assert classify([2**53]) is Route.REFERENCE
    assert classify({1: 2}) is Route.REFERENCE
    assert classify((1, 2)) is Route.REFERENCE
    assert float_route(0.5) is Route.DIRECT
    assert float_route(2.0) is Route.FLOATS
    assert float_route(math.nan) is Route.REFERENCE
    assert float_route(math.inf) is Route.REFERENCE
    assert key_route("") is Route.DIRECT
    assert key_route("\U0001f600") is Route.REFERENCE
    assert needs_reference({"\ue000": 1})
    assert not needs_reference({"a": 1.0})


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, 2**53, -(2**53), {1: 2}, {"a": {1, 2}}, b"x"]
)
def test_values_outside_json_raise_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        canonical(value)
    with pytest.raises(ValueError):
        canonical_reference(value)


def test_an_unsafe_integer_cannot_slip_through_a_wrong_route() -> None:
    with pytest.raises(ValueError):
        canonical([2**60], Route.DIRECT)


def test_reference_is_the_oracle() -> None:
    value: dict[str, Any] = {"b": [1.0, "\u2028"], "a": {"\U0001f600": None}}
    assert canonical_reference(value) == rfc8785.dumps(value)
