"""Event validation: one test per rule, boundaries at each limit, strict JSON, timestamps."""

from __future__ import annotations

import copy
import datetime as dt
import math
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from indelible import errors
from indelible.core import event as event_module
from indelible.core import timestamps as timestamps_module
from indelible.core.encoding import Route
from indelible.core.event import (
    DEFAULT_LIMITS,
    Limits,
    format_timestamp,
    parse_batch,
    parse_json,
    parse_pointer,
    parse_stored_timestamp,
    parse_timestamp,
    validate_batch,
    validate_event,
)

NOW_MS = 1_795_460_700_000  # 2026-11-23T19:05:00.000Z
MAX = 2**53 - 1


def make_event(**overrides: Any) -> dict[str, Any]:
    """A typical billing event; ``None`` in overrides removes a field."""
    event: dict[str, Any] = {
        "event_id": "0190a6e4-7b1c-7d3e-8f00-123456789abc",
        "event_type": "invoice.voided",
        "occurred_at": "2026-11-23T19:03:44.123Z",
        "actor": {"id": "user_42", "type": "user", "name": "Ada Lovelace"},
        "action": "update",
        "outcome": "success",
        "target": {"type": "invoice", "id": "inv_0001234"},
        "related": [{"type": "customer", "id": "cus_9"}],
        "reason": "customer requested cancellation",
        "context": {
            "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "request_id": "req_8f2a",
            "session_id": "sess_1",
            "source": "app",
        },
        "changes": [
            {"field": "status", "before": "open", "after": "void"},
            {"field": "amount_due", "before": 12900, "after": 0},
            {"field": "email", "before": "a@example.com", "after": "b@example.com"},
        ],
        "data": {"plan": "pro", "currency": "EUR", "tax_rate": 0.21, "tags": ["q4"]},
    }
    for key, value in overrides.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def validate(event: Any, limits: Limits = DEFAULT_LIMITS) -> event_module.Event:
    return validate_event(event, now_ms=NOW_MS, limits=limits)


def violations(event: Any, limits: Limits = DEFAULT_LIMITS) -> set[tuple[str, str]]:
    """The (field, rule) pairs validation reports; both paths must agree."""
    with pytest.raises(errors.InvalidEvent) as caught:
        validate(event, limits)
    found = {(error.field, error.rule) for error in caught.value.errors}
    with pytest.raises(errors.InvalidEvent) as again:
        event_module._validate_reporting(event, NOW_MS, limits)
    assert {(error.field, error.rule) for error in again.value.errors} == found
    return found


def assert_rejects(event: Any, field: str, rule: str, limits: Limits = DEFAULT_LIMITS) -> None:
    assert (field, rule) in violations(event, limits)


def deep(level: int) -> dict[str, Any]:
    """An event whose deepest container sits at nesting ``level`` (the event is level 1)."""
    inner: Any = {}
    for _ in range(level - 2):
        inner = {"x": inner}
    return make_event(data=inner)


# -- accepted events -----------------------------------------------------------------------


def test_a_typical_event_validates_and_encodes_canonically() -> None:
    raw = make_event()
    event = validate(raw)
    assert event.event_id == raw["event_id"]
    assert event.body == raw
    assert event.occurred_at_ms == parse_timestamp("2026-11-23T19:03:44.123Z")
    assert event.canonical == rfc8785.dumps(raw)
    assert event.route is Route.DIRECT
    assert event.personal == ()


def test_typical_events_take_the_fast_path() -> None:
    """A guard on speed: the usual shapes must not fall back to the reporting walk."""
    for raw in [make_event(), make_event(personal=["/reason"]), make_event(data={"x": 1.0})]:
        assert event_module._accept(raw, NOW_MS, DEFAULT_LIMITS) is not None


def test_the_minimal_event_validates() -> None:
    raw = make_event(target=None, related=None, reason=None, context=None, changes=None, data=None)
    raw["actor"] = {"id": "svc", "type": "service"}
    assert validate(raw).body == raw


def test_crlf_and_ansi_escapes_are_accepted_and_stored_verbatim() -> None:
    reason = "line one\r\nline two \x1b[31mred\x1b[0m \t\x07\x7f"
    event = validate(make_event(reason=reason, data={"note": "\x1b]0;title\x07\r\n"}))
    assert event.body["reason"] == reason
    assert orjson.loads(event.canonical)["reason"] == reason
    assert event.canonical == rfc8785.dumps(event.body)


@pytest.mark.parametrize(
    ("given_text", "stored"),
    [
        ("2026-11-23T19:03:44.123Z", "2026-11-23T19:03:44.123Z"),
        ("2026-11-23T19:03:44Z", "2026-11-23T19:03:44.000Z"),
        ("2026-11-23T19:03:44.1Z", "2026-11-23T19:03:44.100Z"),
        ("2026-11-23T19:03:44.12Z", "2026-11-23T19:03:44.120Z"),
        ("2026-11-23T19:03:44.123+00:00", "2026-11-23T19:03:44.123Z"),
        ("2026-11-23T19:03:44+00:00", "2026-11-23T19:03:44.000Z"),
        ("1969-07-20T20:17:40Z", "1969-07-20T20:17:40.000Z"),
    ],
)
def test_occurred_at_is_normalized_to_milliseconds_z(given_text: str, stored: str) -> None:
    raw = make_event(occurred_at=given_text)
    event = validate(raw)
    assert event.body["occurred_at"] == stored
    assert raw["occurred_at"] == given_text  # the submitted object is left alone
    assert event.occurred_at_ms == parse_timestamp(stored)


def test_personal_is_sorted_and_an_empty_list_dropped() -> None:
    event = validate(make_event(personal=["/reason", "/actor/name", "/changes/2/before"]))
    assert event.body["personal"] == ["/actor/name", "/changes/2/before", "/reason"]
    assert event.personal == ("/actor/name", "/changes/2/before", "/reason")
    assert "personal" not in validate(make_event(personal=[])).body


def test_floats_and_unusual_keys_pick_the_route_that_keeps_jcs_exact() -> None:
    floats = validate(make_event(data={"amount": 100.0, "tiny": 1e-7}))
    assert floats.route is Route.FLOATS
    assert floats.canonical == rfc8785.dumps(floats.body)
    keys = validate(make_event(data={"\ue000": 1, "\U0001f600": 2}))
    assert keys.route is Route.REFERENCE
    assert keys.canonical == rfc8785.dumps(keys.body)


def test_data_and_changes_accept_any_json_inside() -> None:
    anything = {"k": [1, -2.5, None, True, {"nested": {"deeper": ["x"]}}], "": "", "~/": 0}
    event = validate(make_event(data=anything, changes=[{"field": "f", "after": anything}]))
    assert event.body["data"] == anything


# -- one test per rule ---------------------------------------------------------------------

REQUIRED = ["event_id", "event_type", "occurred_at", "actor", "action", "outcome"]


@pytest.mark.parametrize("name", REQUIRED)
def test_required(name: str) -> None:
    assert_rejects(make_event(**{name: None}), f"/{name}", "required")


@pytest.mark.parametrize(
    ("path", "nested"),
    [
        ("/actor/id", ("actor", "id")),
        ("/actor/type", ("actor", "type")),
        ("/target/id", ("target", "id")),
        ("/target/type", ("target", "type")),
        ("/related/0/id", ("related", 0, "id")),
        ("/changes/0/field", ("changes", 0, "field")),
    ],
)
def test_required_nested(path: str, nested: tuple[Any, ...]) -> None:
    raw = make_event()
    container: Any = raw
    for step in nested[:-1]:
        container = container[step]
    del container[nested[-1]]
    assert_rejects(raw, path, "required")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", 7),
        ("event_type", ["invoice.voided"]),
        ("occurred_at", 1_795_460_624_123),
        ("actor", "user_42"),
        ("action", None),
        ("outcome", True),
        ("target", ["invoice", "1"]),
        ("related", {"type": "x", "id": "y"}),
        ("reason", 3.5),
        ("context", "ip"),
        ("changes", {"field": "x"}),
        ("data", ["not", "an", "object"]),
        ("personal", "/reason"),
    ],
)
def test_type(field: str, value: Any) -> None:
    raw = make_event()
    raw[field] = value
    assert_rejects(raw, f"/{field}", "type")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/actor/name", 5),
        ("/context/user_agent", None),
        ("/context/ip", 203),
        ("/related/0", "customer:cus_9"),
        ("/changes/0", "status"),
        ("/changes/0/field", 1),
    ],
)
def test_type_nested(path: str, value: Any) -> None:
    raw = make_event()
    *parents, last = path.strip("/").split("/")
    container: Any = raw
    for step in parents:
        container = container[int(step) if step.isdigit() else step]
    container[int(last) if last.isdigit() else last] = value
    assert_rejects(raw, path, "type")


def test_type_of_non_json_python_values() -> None:
    assert_rejects(make_event(data={"when": dt.datetime.now(dt.UTC)}), "/data/when", "type")
    assert_rejects(make_event(data={"pair": (1, 2)}), "/data/pair", "type")
    assert_rejects(make_event(data={1: "int key"}), "/data", "type")
    assert_rejects(["not", "an", "event"], "", "type")


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/color", ()),
        ("/actor/email", ("actor",)),
        ("/target/name", ("target",)),
        ("/context/country", ("context",)),
        ("/related/0/name", ("related", 0)),
        ("/changes/0/old", ("changes", 0)),
    ],
)
def test_unknown_field(path: str, where: tuple[Any, ...]) -> None:
    raw = make_event()
    container: Any = raw
    for step in where:
        container = container[step]
    container[path.rsplit("/", 1)[1]] = "x"
    assert_rejects(raw, path, "unknown_field")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/event_id", "0190A6E4-7B1C-7D3E-8F00-123456789ABC"),
        ("/event_id", "0190a6e47b1c7d3e8f00123456789abc"),
        ("/event_id", "{0190a6e4-7b1c-7d3e-8f00-123456789abc}"),
        ("/event_id", "0190a6e4-7b1c-7d3e-8f00-123456789abg"),
        ("/event_type", "invoice"),
        ("/event_type", "Invoice.Voided"),
        ("/event_type", "invoice..voided"),
        ("/event_type", "invoice.voided."),
        ("/event_type", "1nvoice.voided"),
        ("/event_type", "invoice.void-ed"),
        ("/action", "Update"),
        ("/action", "up date"),
        ("/action", ""),
        ("/action", "a" * 65),
        ("/target/type", "Invoice"),
        ("/related/0/type", "cus-tomer"),
        ("/context/source", "App"),
        ("/occurred_at", "2026-11-23T19:03:44.123+01:00"),
        ("/occurred_at", "2026-11-23T19:03:44.123-00:00"),
        ("/occurred_at", "2026-11-23T19:03:44.1234Z"),
        ("/occurred_at", "2026-11-23 19:03:44Z"),
        ("/occurred_at", "2026-11-23t19:03:44z"),
        ("/occurred_at", "2026-02-30T19:03:44Z"),
        ("/occurred_at", "2026-11-23T24:00:00Z"),
        ("/occurred_at", "2026-11-23T23:59:60Z"),
        ("/occurred_at", "2026-11-23T19:03:44.Z"),
        ("/occurred_at", "2026-11-23"),
        ("/occurred_at", "+202-11-23T19:03:44Z"),
        ("/occurred_at", "2026-11-23T19:03:44.12\u0663Z"),
        ("/context/ip", "256.1.1.1"),
        ("/context/ip", "01.2.3.4"),
        ("/context/ip", "1.2.3"),
        ("/context/ip", "fe80::1%eth0"),
        ("/context/ip", "example.com"),
        ("/context/ip", "::g"),
        ("/actor/id", ""),
        ("/target/id", ""),
        ("/changes/0/field", ""),
    ],
)
def test_format(path: str, value: str) -> None:
    raw = make_event()
    *parents, last = path.strip("/").split("/")
    container: Any = raw
    for step in parents:
        container = container[int(step) if step.isdigit() else step]
    container[last] = value
    assert_rejects(raw, path, "format")


@pytest.mark.parametrize(
    "ip", ["0.0.0.0", "255.255.255.255", "::1", "2001:db8::7", "::ffff:1.2.3.4"]
)
def test_ip_addresses_are_accepted_as_written(ip: str) -> None:
    raw = make_event()
    raw["context"]["ip"] = ip
    assert validate(raw).body["context"]["ip"] == ip


def test_event_type_at_128_bytes_passes_and_129_fails() -> None:
    at_limit = "a" * 63 + "." + "b" * 64
    assert validate(make_event(event_type=at_limit)).body["event_type"] == at_limit
    assert_rejects(make_event(event_type=at_limit + "c"), "/event_type", "format")


@pytest.mark.parametrize(("path", "value"), [("/actor/type", "robot"), ("/outcome", "ok")])
def test_enum(path: str, value: str) -> None:
    raw = make_event()
    *parents, last = path.strip("/").split("/")
    container: Any = raw
    for step in parents:
        container = container[step]
    container[last] = value
    assert_rejects(raw, path, "enum")


def test_max_length_at_the_limit_passes_one_byte_over_fails() -> None:
    limit = DEFAULT_LIMITS.max_string_bytes
    assert validate(make_event(reason="r" * limit)).body["reason"] == "r" * limit
    assert_rejects(make_event(reason="r" * (limit + 1)), "/reason", "max_length")
    two_byte = "é" * (limit // 2)  # counted in UTF-8 bytes, not characters
    validate(make_event(data={"name": two_byte}))
    assert_rejects(make_event(data={"name": two_byte + "x"}), "/data/name", "max_length")


def test_max_length_applies_to_keys() -> None:
    limit = DEFAULT_LIMITS.max_string_bytes
    validate(make_event(data={"k" * limit: 1}))
    key = "k" * (limit + 1)
    assert_rejects(make_event(data={key: 1}), f"/data/{key}", "max_length")


def test_max_depth_at_the_limit_passes_one_over_fails() -> None:
    limit = DEFAULT_LIMITS.max_depth
    validate(deep(limit))
    found = violations(deep(limit + 1))
    assert [rule for _, rule in found] == ["max_depth"]
    (field,) = [field for field, _ in found]
    assert field == "/data" + "/x" * (limit - 1)  # the innermost object, at level 33


def test_max_depth_counts_arrays_and_before_after() -> None:
    limit = DEFAULT_LIMITS.max_depth
    nested: Any = []
    for _ in range(limit - 4):  # the event, changes, the change, then these arrays
        nested = [nested]
    validate(make_event(changes=[{"field": "f", "before": nested}]))
    assert_rejects(
        make_event(changes=[{"field": "f", "before": [nested]}]),
        "/changes/0/before" + "/0" * (limit - 3),
        "max_depth",
    )


@pytest.mark.parametrize(
    ("field", "limit", "item"),
    [
        ("changes", DEFAULT_LIMITS.max_changes, {"field": "f", "after": 1}),
        ("related", DEFAULT_LIMITS.max_related, {"type": "invoice", "id": "i"}),
    ],
)
def test_max_items_at_the_limit_passes_one_over_fails(field: str, limit: int, item: Any) -> None:
    validate(make_event(**{field: [dict(item) for _ in range(limit)]}))
    assert_rejects(
        make_event(**{field: [dict(item) for _ in range(limit + 1)]}), f"/{field}", "max_items"
    )


def test_max_items_for_personal() -> None:
    limit = DEFAULT_LIMITS.max_personal
    data = {f"k{i}": i for i in range(limit + 1)}
    validate(make_event(data=data, personal=[f"/data/k{i}" for i in range(limit)]))
    too_many = [f"/data/k{i}" for i in range(limit + 1)]
    assert_rejects(make_event(data=data, personal=too_many), "/personal", "max_items")


def padded_to(size: int) -> dict[str, Any]:
    """An event whose canonical form is exactly ``size`` bytes."""
    raw = make_event(data={"a": "", "b": "", "c": "", "d": "", "e": ""})
    missing = size - len(rfc8785.dumps(raw))
    for key in "abcde":
        take = min(missing, DEFAULT_LIMITS.max_string_bytes)
        raw["data"][key] = "p" * take
        missing -= take
    assert missing == 0
    assert len(rfc8785.dumps(raw)) == size
    return raw


def test_max_event_bytes_at_the_limit_passes_one_over_fails() -> None:
    limit = DEFAULT_LIMITS.max_event_bytes
    assert len(validate(padded_to(limit)).canonical) == limit
    assert violations(padded_to(limit + 1)) == {("", "max_event_bytes")}


def test_future_timestamp_exactly_five_minutes_passes_one_ms_more_fails() -> None:
    limit = DEFAULT_LIMITS.max_future_ms
    assert limit == 300_000
    validate(make_event(occurred_at=format_timestamp(NOW_MS + limit)))
    late = make_event(occurred_at=format_timestamp(NOW_MS + limit + 1))
    assert violations(late) == {("/occurred_at", "future_timestamp")}


def test_nul_character_in_values_and_keys_anywhere() -> None:
    assert_rejects(make_event(reason="a\x00b"), "/reason", "nul_character")
    raw = make_event()
    raw["actor"]["id"] = "\x00"
    assert_rejects(raw, "/actor/id", "nul_character")
    assert_rejects(make_event(data={"x": [{"y": "\x00"}]}), "/data/x/0/y", "nul_character")
    assert_rejects(make_event(data={"bad\x00key": 1}), "/data/bad\x00key", "nul_character")
    assert_rejects(
        make_event(changes=[{"field": "f", "before": {"k\x00": 1}}]),
        "/changes/0/before/k\x00",
        "nul_character",
    )


def test_a_backslash_u0000_written_out_is_not_a_nul() -> None:
    text = "\\u0000 is six characters"
    assert validate(make_event(reason=text)).body["reason"] == text


def test_lone_surrogate_in_values_and_keys_anywhere() -> None:
    assert_rejects(make_event(reason="a\ud800b"), "/reason", "lone_surrogate")
    assert_rejects(make_event(data={"x": ["\udfff"]}), "/data/x/0", "lone_surrogate")
    assert_rejects(make_event(data={"\ud83d": 1}), "/data/\ud83d", "lone_surrogate")
    raw = make_event()
    raw["actor"]["name"] = "\udc00"
    assert_rejects(raw, "/actor/name", "lone_surrogate")


@pytest.mark.parametrize("value", [MAX, -MAX, 0, 1.5, -(2.0**52) + 0.5])
def test_integers_within_the_safe_range_pass(value: float) -> None:
    validate(make_event(data={"n": value}))


@pytest.mark.parametrize("value", [MAX + 1, -MAX - 1, 2**64, 2.0**53, -1e300])
def test_integer_range(value: float) -> None:
    assert_rejects(make_event(data={"n": value}), "/data/n", "integer_range")
    assert_rejects(
        make_event(changes=[{"field": "f", "after": [value]}]),
        "/changes/0/after/0",
        "integer_range",
    )


def test_an_integer_literal_too_big_for_orjson_is_rejected_not_rounded() -> None:
    raw = parse_json(b'{"n": 123456789012345678901234567890}', max_bytes=1000)
    assert_rejects(make_event(data=raw), "/data/n", "integer_range")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_not_finite(value: float) -> None:
    assert_rejects(make_event(data={"x": value}), "/data/x", "not_finite")
    assert_rejects(
        make_event(changes=[{"field": "f", "before": value}]), "/changes/0/before", "not_finite"
    )


@pytest.mark.parametrize(
    ("pointer", "why"),
    [
        ("reason", "not a pointer"),
        ("", "not a pointer"),
        ("/data/a~2", "bad escape"),
        ("/event_id", "not erasable"),
        ("/actor/id", "not erasable"),
        ("/data", "all of data"),
        ("/changes/0/field", "not erasable"),
        ("/changes/0", "a whole change"),
        ("/context", "all of context"),
        ("/data/missing", "does not resolve"),
        ("/changes/9/before", "does not resolve"),
        ("/changes/00/before", "not an array index"),
        ("/changes/-/before", "not an array index"),
        ("/changes/1/before/x", "does not resolve into a number"),
    ],
)
def test_personal_pointer(pointer: str, why: str) -> None:
    raw = make_event(data={"a": {"b": 1}}, personal=[pointer])
    assert_rejects(raw, "/personal/0", "personal_pointer")


def test_personal_pointers_may_not_repeat_or_nest() -> None:
    raw = make_event(data={"a": {"b": 1}}, personal=["/data/a", "/reason", "/data/a"])
    assert_rejects(raw, "/personal/2", "personal_pointer")
    raw = make_event(data={"a": {"b": 1}, "a!": 2}, personal=["/data/a/b", "/data/a!", "/data/a"])
    assert violations(raw) == {("/personal/0", "personal_pointer")}


def test_personal_pointers_escape_tildes_and_slashes() -> None:
    raw = make_event(data={"a/b": {"~c": 1}}, personal=["/data/a~1b/~0c"])
    assert validate(raw).personal == ("/data/a~1b/~0c",)


def test_every_violation_is_reported_at_once() -> None:
    raw = make_event(event_id="nope", outcome="maybe", color="red", reason="\x00")
    raw["actor"]["type"] = "robot"
    raw["actor"][7] = "seven"
    raw["data"]["n"] = math.nan
    raw["data"]["a/b"] = "\x00"
    raw["changes"].append({"field": "f", "before": None, "after": True})
    raw["personal"] = [5]
    assert violations(raw) == {
        ("/event_id", "format"),
        ("/outcome", "enum"),
        ("/color", "unknown_field"),
        ("/reason", "nul_character"),
        ("/actor/type", "enum"),
        ("/actor", "type"),
        ("/data/n", "not_finite"),
        ("/data/a~1b", "nul_character"),
        ("/personal/0", "type"),
    }


def test_errors_carry_a_message_and_the_json_shape() -> None:
    with pytest.raises(errors.InvalidEvent) as caught:
        validate(make_event(outcome="maybe"))
    shape = caught.value.to_dict()["error"]
    assert shape["code"] == "invalid_event"
    (detail,) = shape["details"]["errors"]
    assert detail["field"] == "/outcome"
    assert detail["rule"] == "enum"
    assert "success" in detail["message"]


def test_limits_are_configurable_and_checked() -> None:
    tight = Limits(max_string_bytes=10, max_changes=1)
    assert_rejects(make_event(reason="x" * 11), "/reason", "max_length", tight)
    assert_rejects(make_event(), "/changes", "max_items", tight)
    with pytest.raises(ValueError):
        Limits(max_depth=3)
    with pytest.raises(ValueError):
        Limits(max_changes=-1)


# -- batches -------------------------------------------------------------------------------


def test_validate_batch_reports_every_invalid_item_with_its_index() -> None:
    items = [make_event(), make_event(outcome="maybe"), make_event(), make_event(action="X")]
    with pytest.raises(errors.InvalidEvent) as caught:
        validate_batch(items, now_ms=NOW_MS)
    assert [(e.index, e.field, e.rule) for e in caught.value.errors] == [
        (1, "/outcome", "enum"),
        (3, "/action", "format"),
    ]
    assert caught.value.to_dict()["error"]["details"]["errors"][0]["index"] == 1


def test_validate_batch_returns_events_in_order() -> None:
    items = [make_event(event_id=f"0190a6e4-7b1c-7d3e-8f00-12345678900{i}") for i in range(3)]
    assert [e.event_id for e in validate_batch(items, now_ms=NOW_MS)] == [
        item["event_id"] for item in items
    ]


# -- strict JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',
        b'{"x":{"a":1,"b":{"c":1,"c":1}}}',
        b'[{"ok":1},{"k":1,"k":1}]',
        b'{"a":1,"\\u0061":2}',
        b'{"a:b":1,"a\\u003ab":2}',
        b'{"x":{"a":1,"a":2},"y":"::::"}',
    ],
)
def test_duplicate_keys_are_malformed_at_any_depth(raw: bytes) -> None:
    with pytest.raises(errors.MalformedJSON, match="duplicate key"):
        parse_json(raw, max_bytes=1000)


@pytest.mark.parametrize(
    "raw",
    [b'{"a:b":"c:d","\\u003a":"\\u003A"}', b'{"t":"12:00","u":{"v":"::"}}'],
)
def test_colons_inside_strings_are_not_mistaken_for_duplicates(raw: bytes) -> None:
    assert parse_json(raw, max_bytes=1000) == orjson.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b'{"x":NaN}',
        b'{"x":Infinity}',
        b'{"x":-Infinity}',
        b'{"x":"\\ud800"}',
        b'{"x":"\\udc00"}',
        b'{"\\ud800":1}',
        b'{"x":"\xff"}',
        b'{"x":"\xed\xa0\x80"}',
        b'{"x":1} trailing',
        b'{"x":1}{"y":2}',
        b"\xef\xbb\xbf{}",
        b"{'x':1}",
        b'{"x":1,}',
        b"",
    ],
)
def test_not_strict_json_is_malformed(raw: bytes) -> None:
    with pytest.raises(errors.MalformedJSON):
        parse_json(raw, max_bytes=1000)


@pytest.mark.parametrize("depth", [300, 900])
def test_deep_documents_are_still_checked_for_duplicate_keys(depth: int) -> None:
    inner = b'{"a":1,"b":2}'
    assert parse_json(b"[" * depth + inner + b"]" * depth, max_bytes=10_000)
    with pytest.raises(errors.MalformedJSON, match="duplicate"):
        parse_json(b"[" * depth + b'{"a":1,"a":2}' + b"]" * depth, max_bytes=10_000)


def test_documents_deeper_than_the_strict_parser_goes_exceed_the_depth_limit() -> None:
    raw = b"[" * 1015 + b'{"a":1}' + b"]" * 1015
    with pytest.raises(errors.LimitExceeded) as caught:
        parse_json(raw, max_bytes=10_000)
    assert caught.value.limit == "max_depth"


def test_memos_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_module, "_MEMO_SIZE", 2)
    monkeypatch.setattr(timestamps_module, "_TIMESTAMP_MEMO_SIZE", 2)
    monkeypatch.setattr(event_module, "_POINTER_MEMO_SIZE", 2)
    for minute in range(5):
        raw = make_event(occurred_at=f"2026-11-23T19:0{minute}:44.123Z", action=f"act{minute}")
        raw["context"]["ip"] = f"10.0.0.{minute}"
        validate(raw)
        format_timestamp(NOW_MS + minute * 1000)
    assert len(event_module._valid_tokens) <= 2
    assert len(event_module._valid_ips) <= 2
    assert len(timestamps_module._minute_ms) <= 2
    assert len(timestamps_module._second_text) <= 2
    for index in range(5):
        parse_pointer(f"/data/{index}")
    assert len(event_module._pointers) <= 2


def test_malformed_json_names_the_position() -> None:
    with pytest.raises(errors.MalformedJSON, match="column 6"):
        parse_json(b'{"a":x}', max_bytes=100)


def test_oversize_and_overdeep_json_exceed_limits() -> None:
    with pytest.raises(errors.LimitExceeded) as caught:
        parse_json(b'{"a":"' + b"x" * 100 + b'"}', max_bytes=100)
    assert (caught.value.limit, caught.value.maximum, caught.value.actual) == (
        "max_bytes",
        100,
        108,
    )
    assert parse_json(b'"' + b"x" * 98 + b'"', max_bytes=100) == "x" * 98
    with pytest.raises(errors.LimitExceeded) as deep_error:
        parse_json(b"[" * 2000 + b"]" * 2000, max_bytes=10_000)
    assert deep_error.value.limit == "max_depth"


def test_parse_batch_accepts_an_object_an_array_or_ndjson() -> None:
    one, two = make_event(), make_event(action="read")
    assert parse_batch(orjson.dumps(one), max_bytes=10**6, max_items=10) == [one]
    assert parse_batch(orjson.dumps([one, two]), max_bytes=10**6, max_items=10) == [one, two]
    ndjson = orjson.dumps(one) + b"\r\n\n" + orjson.dumps(two) + b"\n"
    assert parse_batch(ndjson, max_bytes=10**6, max_items=10) == [one, two]
    pretty = orjson.dumps(one, option=orjson.OPT_INDENT_2)
    assert parse_batch(pretty, max_bytes=10**6, max_items=10) == [one]
    single_line = orjson.dumps(one) + b"\n"
    assert parse_batch(single_line, max_bytes=10**6, max_items=10, ndjson=True) == [one]
    assert parse_batch(b"[]", max_bytes=10, max_items=10) == []


def test_parse_batch_limits_items_and_bytes() -> None:
    body = orjson.dumps([{"n": i} for i in range(4)])
    assert len(parse_batch(body, max_bytes=10**6, max_items=4)) == 4
    with pytest.raises(errors.LimitExceeded) as caught:
        parse_batch(body, max_bytes=10**6, max_items=3)
    assert (caught.value.limit, caught.value.actual) == ("max_items", 4)
    ndjson = b"\n".join(orjson.dumps({"n": i}) for i in range(4))
    with pytest.raises(errors.LimitExceeded):
        parse_batch(ndjson, max_bytes=10**6, max_items=3)
    with pytest.raises(errors.LimitExceeded):
        parse_batch(body, max_bytes=len(body) - 1, max_items=10)


def test_ndjson_errors_name_the_line() -> None:
    body = b'{"n":1}\n{"n":2}\n\n{"n":3,"n":4}\n'
    with pytest.raises(errors.MalformedJSON, match=r"line 4: .*duplicate key"):
        parse_batch(body, max_bytes=1000, max_items=10)


# -- timestamps ----------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.integers(-62_135_596_800_000, 253_402_300_799_999))
def test_timestamps_round_trip_and_agree_with_datetime(ms: int) -> None:
    text = format_timestamp(ms)
    assert parse_timestamp(text) == ms
    assert parse_stored_timestamp(text) == ms
    assert format_timestamp(parse_timestamp(text)) == text
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    assert text == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2024-02-29T00:00:00Z", True),
        ("2023-02-29T00:00:00Z", False),
        ("1900-02-29T00:00:00Z", False),
        ("2000-02-29T00:00:00Z", True),
        ("0001-01-01T00:00:00Z", True),
        ("0000-12-31T23:59:59Z", False),
        ("9999-12-31T23:59:59.999Z", True),
        ("2026-04-31T00:00:00Z", False),
        ("2026-13-01T00:00:00Z", False),
    ],
)
def test_calendar_dates(text: str, valid: bool) -> None:
    if valid:
        assert format_timestamp(parse_timestamp(text))[:19] == text[:19]
    else:
        with pytest.raises(ValueError):
            parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T19:03:44Z",
        "2026-11-23T19:03:60.000Z",
        "2026-11-23T19:03:4x.000Z",
        "2026-11-23T19:03:44,000Z",
        "2026-11-23T19:03:44.000+",
        17,
    ],
)
def test_parse_stored_timestamp_accepts_only_the_stored_form(text: Any) -> None:
    assert parse_stored_timestamp(text) is None


def test_format_timestamp_refuses_years_outside_1_to_9999() -> None:
    with pytest.raises(ValueError):
        format_timestamp(253_402_300_800_000)
    with pytest.raises(ValueError):
        format_timestamp(-62_135_596_800_001)


def test_parse_pointer() -> None:
    assert parse_pointer("/a/b") == ("a", "b")
    assert parse_pointer("/a~1b/~0c/~01") == ("a/b", "~c", "~1")
    assert parse_pointer("/") == ("",)
    assert parse_pointer("a") is None
    assert parse_pointer("/a~") is None
    assert parse_pointer("/a~2") is None


# -- the fast path never accepts what the reporting walk rejects ---------------------------

MUTATIONS: list[tuple[tuple[Any, ...], Any]] = [
    (("event_id",), "X"),
    (("occurred_at",), "2026-11-23T19:03:44.123+01:00"),
    (("occurred_at",), "2026-11-23T19:03:44.1Z"),
    (("actor", "type"), "robot"),
    (("actor", "name"), None),
    (("target",), {"type": "invoice"}),
    (("context", "ip"), "1.2.3.999"),
    (("context", "source"), 5),
    (("changes", 0, "before"), math.nan),
    (("changes", 0, "before"), 1.0),
    (("changes", 1, "after"), 2**53),
    (("changes", 1, "after"), {"\ue000": 1}),
    (("data", "tags"), [[[[["deep"]]]]]),
    (("data", "n"), (1, 2)),
    (("data", "s"), "\x00"),
    (("data", "k"), {"\ud800": 1}),
    (("related",), []),
    (("related",), [{"type": "x", "id": ""}]),
    (("reason",), None),
    (("personal",), ["/reason"]),
    (("personal",), ["/data/nope"]),
    (("extra",), 1),
]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(MUTATIONS), max_size=3), st.integers(5, 40))
def test_fast_path_agrees_with_the_reporting_walk(
    mutations: list[tuple[tuple[Any, ...], Any]], max_depth: int
) -> None:
    raw = make_event()
    for path, value in mutations:
        container: Any = raw
        for step in path[:-1]:
            container = container[step]
        container[path[-1]] = copy.deepcopy(value)
    limits = Limits(max_depth=max_depth)
    try:
        fast = validate(raw, limits)
    except errors.InvalidEvent as exc:
        with pytest.raises(errors.InvalidEvent) as slow:
            event_module._validate_reporting(raw, NOW_MS, limits)
        assert slow.value.errors == exc.errors
        return
    slow_event = event_module._validate_reporting(raw, NOW_MS, limits)
    assert (fast.body, fast.canonical, fast.route, fast.occurred_at_ms) == (
        slow_event.body,
        slow_event.canonical,
        slow_event.route,
        slow_event.occurred_at_ms,
    )
    assert fast.canonical == rfc8785.dumps(fast.body)
