"""Rules documents: every problem named at its place, conditions, schedules, packs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from indelible.core.rules import (
    MISSING,
    Many,
    RuleSet,
    Window,
    getter,
    number,
    parse_duration,
    parse_rules,
    resolve,
)
from indelible.errors import InvalidRules


def zone(name: str) -> tzinfo:
    if name == "Nowhere/Else":
        raise ValueError(name)
    return ZoneInfo(name)


def parse(document: Any, packs: dict[str, Any] | None = None) -> RuleSet:
    return parse_rules(document, zone=zone, packs=packs)


def problems(document: Any, packs: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRules) as caught:
        parse(document, packs)
    assert caught.value.code == "invalid_rules"
    return [(error.field, error.rule) for error in caught.value.errors]


def match(when: Any, **more: Any) -> dict[str, Any]:
    return {"rules": [{"id": "r", "kind": "match", "when": when, **more}]}


def holds(when: Any, event: dict[str, Any]) -> bool:
    rule = parse(match(when)).rules[0]
    return rule.test(event)


EVENT = {
    "event_type": "invoice.updated",
    "occurred_at": "2026-12-02T22:00:00.000Z",
    "actor": {"id": "u-1", "type": "user"},
    "outcome": "success",
    "flag": True,
    "count": 3,
    "changes": [{"field": "role", "after": "admin"}, {"field": "email"}, "odd"],
    "data": {"amount": "12.50", "nested": {"deep": 1}, "none": None},
}


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({}, True),
        ({"event_type": "invoice.updated"}, True),
        ({"event_type": "invoice.voided"}, False),
        ({"event_type": ["invoice.voided", "invoice.updated"]}, True),
        ({"event_type": {"in": ["invoice.updated"]}}, True),
        ({"event_type": {"not_in": ["invoice.updated"]}}, False),
        ({"missing": {"not_in": ["x"]}}, True),
        ({"missing": {"in": ["x"]}}, False),
        ({"missing": "x"}, False),
        ({"data.none": None}, True),
        ({"flag": True}, True),
        ({"flag": 1}, False),
        ({"count": True}, False),
        ({"flag": [True]}, True),
        ({"flag": [1]}, False),
        ({"flag": {"not_in": [False]}}, True),
        ({"data.nested": ["x"]}, False),
        ({"data.nested": {"not_in": ["x"]}}, True),
        ({"count": 3.0}, True),
        ({"actor.id": {"eq": "u-1"}}, True),
        ({"actor.id": {"ne": "u-1"}}, False),
        ({"actor.id": {"prefix": "u-"}}, True),
        ({"actor.id": {"suffix": "-1"}}, True),
        ({"actor.id": {"contains": "-"}}, True),
        ({"count": {"prefix": "3"}}, False),
        ({"actor.id": {"matches": "^u-[0-9]+$"}}, True),
        ({"count": {"matches": "3"}}, False),
        ({"actor.name": {"exists": False}}, True),
        ({"data.none": {"exists": True}}, False),
        ({"actor.id": {"exists": True}}, True),
        ({"data.amount": {"gt": 12}}, True),
        ({"data.amount": {"gte": 12.5}}, True),
        ({"data.amount": {"lt": 12.5}}, False),
        ({"count": {"lte": "3"}}, True),
        ({"flag": {"gt": 0}}, False),
        ({"actor.id": {"gt": 0}}, False),
        ({"count": {"gt": 1, "lt": 5}}, True),
        ({"changes.field": "role"}, True),
        ({"changes.field": ["email", "x"]}, True),
        ({"changes.field": "status"}, False),
        ({"actor.id.more": "x"}, False),
        ({"any_of": [{"actor.id": "nobody"}, {"outcome": "success"}]}, True),
        ({"any_of": [{"actor.id": "nobody"}, {"outcome": "failure"}]}, False),
        ({"any_of": [{"actor.id": "x"}, {"outcome": "x"}, {"count": 3}]}, True),
        ({"any_of": [{"actor.id": "x"}, {"outcome": "x"}, {"count": 4}]}, False),
        ({"any_of": [{"a": 1}, {"b": 2}, {"c": 3}, {"count": 3}]}, True),
        ({"all_of": [{"actor.id": "u-1"}, {"outcome": "success"}]}, True),
        ({"not": {"outcome": "failure"}}, True),
        ({"actor.id": "u-1", "outcome": "success", "count": 3}, True),
        ({"actor.id": "u-1", "outcome": "failure", "count": 3}, False),
    ],
)
def test_conditions(when: Any, expected: bool) -> None:
    assert holds(when, EVENT) is expected


def test_paths_reach_through_lists_and_numbers_come_from_strings() -> None:
    assert resolve(EVENT, ["changes", "field"]) == Many(["role", "email"])
    assert resolve({"a": [{"b": [{"c": 1}, {"c": 2}]}, {"b": 3}]}, ["a", "b", "c"]) == Many([1, 2])
    assert getter("actor")(EVENT) == EVENT["actor"]
    assert getter("nothing")(EVENT) is MISSING
    assert repr(MISSING) == "MISSING"
    assert [number(v) for v in (3, 2.5, "12.50", "x", "nan", "inf", None, [1])] == [
        3.0,
        2.5,
        12.5,
        None,
        None,
        None,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("90s", 90_000),
        ("10m", 600_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        (5, 5000),
    ],
)
def test_durations(text: Any, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["10", "10 m", "-5", -5, 1.5, None, "1w"])
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], [("", "type")]),
        ({"bogus": 1}, [("/bogus", "unknown")]),
        ({"version": 2}, [("/version", "value")]),
        ({"packs": "billing"}, [("/packs", "type")]),
        ({"packs": ["nope", 3]}, [("/packs/0", "unknown"), ("/packs/1", "unknown")]),
        ({"rules": {}}, [("/rules", "type")]),
        ({"schedules": []}, [("/schedules", "type")]),
        ({"defaults": {"x": 1}}, [("/defaults", "type")]),
        ({"defaults": []}, [("/defaults", "type")]),
        ({"sinks": {}}, [("/sinks", "type")]),
        ({"sinks": [1]}, [("/sinks/0", "type")]),
        ({"sinks": [{"name": "Bad Name", "type": "webhook"}]}, [("/sinks/0/name", "name")]),
        ({"sinks": [{"name": "a", "type": "fax"}]}, [("/sinks/0/type", "value")]),
        (
            {"sinks": [{"name": "a", "type": "slack"}, {"name": "a", "type": "slack"}]},
            [("/sinks/1/name", "duplicate")],
        ),
        ({"overrides": []}, [("/overrides", "type")]),
        ({"overrides": {"nope": {}}}, [("/overrides/nope", "unknown")]),
        ({"disable": "r"}, [("/disable", "type")]),
        ({"rules": [1]}, [("/rules/0", "type")]),
        ({"rules": [{"id": "Bad"}]}, [("/rules/0/id", "id")]),
        (
            {"rules": [{"id": "r", "kind": "match"}, {"id": "r", "kind": "match"}]},
            [("/rules/1/id", "duplicate")],
        ),
        (
            {"rules": [{"id": "r", "kind": "match"}], "overrides": {"r": 1}},
            [("/overrides/r", "type")],
        ),
        ({"rules": [{"id": "r", "kind": "guess"}]}, [("/rules/0/kind", "value")]),
        (
            {"rules": [{"id": "r", "kind": "match", "window": "1m"}]},
            [("/rules/0/window", "unknown")],
        ),
        ({"rules": [{"id": "r", "kind": "match", "title": 3}]}, [("/rules/0/title", "type")]),
        (
            {"rules": [{"id": "r", "kind": "match", "description": "x" * 1001}]},
            [("/rules/0/description", "type")],
        ),
        (
            {"rules": [{"id": "r", "kind": "match", "severity": "dire"}]},
            [("/rules/0/severity", "value")],
        ),
        ({"rules": [{"id": "r", "kind": "match", "sinks": "a"}]}, [("/rules/0/sinks", "type")]),
        (
            {"rules": [{"id": "r", "kind": "match", "sinks": ["a"]}]},
            [("/rules/0/sinks", "unknown")],
        ),
        (
            {"rules": [{"id": "r", "kind": "match", "tenants": "acme"}]},
            [("/rules/0/tenants", "type")],
        ),
        (
            {"rules": [{"id": "r", "kind": "match", "max_per_hour": 0}]},
            [("/rules/0/max_per_hour", "value")],
        ),
        (
            {"rules": [{"id": "r", "kind": "match", "dedup": "soon"}]},
            [("/rules/0/dedup", "duration")],
        ),
        (
            {"rules": [{"id": "r", "kind": "match", "enabled": "yes"}]},
            [("/rules/0/enabled", "type")],
        ),
        (
            {"rules": [{"id": "r", "kind": "match", "inside": "nope"}]},
            [("/rules/0/inside", "unknown")],
        ),
        (
            {"rules": [{"id": "r", "kind": "match", "outside": 3}]},
            [("/rules/0/outside", "unknown")],
        ),
        (
            {"rules": [{"id": "r", "kind": "match", "group_by": []}]},
            [("/rules/0/group_by", "path")],
        ),
        (
            {"rules": [{"id": "r", "kind": "match", "group_by": ["a b"]}]},
            [("/rules/0/group_by", "path")],
        ),
        (match([]), [("/rules/0/when", "type")]),
        (match({"a b": 1}), [("/rules/0/when/a b", "path")]),
        (match({"any_of": []}), [("/rules/0/when/any_of", "type")]),
        (match({"any_of": [3]}), [("/rules/0/when/any_of/0", "type")]),
        (match({"not": 3}), [("/rules/0/when/not", "type")]),
        (match({"a": [{"x": 1}]}), [("/rules/0/when/a", "type")]),
        (match({"a": {}}), [("/rules/0/when/a", "type")]),
        (match({"a": {"near": 1}}), [("/rules/0/when/a/near", "operator")]),
        (match({"a": {"in": "x"}}), [("/rules/0/when/a/in", "type")]),
        (match({"a": {"eq": [1]}}), [("/rules/0/when/a/eq", "type")]),
        (match({"a": {"exists": "yes"}}), [("/rules/0/when/a/exists", "type")]),
        (match({"a": {"gt": "many"}}), [("/rules/0/when/a/gt", "type")]),
        (match({"a": {"gt": True}}), [("/rules/0/when/a/gt", "type")]),
        (match({"a": {"prefix": 1}}), [("/rules/0/when/a/prefix", "type")]),
        (match({"a": {"matches": "("}}), [("/rules/0/when/a/matches", "regex")]),
        (
            {"rules": [{"id": "r", "kind": "count", "window": "0s", "threshold": "3"}]},
            [("/rules/0/window", "duration"), ("/rules/0/threshold", "value")],
        ),
        (
            {"rules": [{"id": "r", "kind": "count", "window": "1m", "threshold": 0}]},
            [("/rules/0/threshold", "value")],
        ),
        (
            {"rules": [{"id": "r", "kind": "sum", "window": "1m", "threshold": 1, "field": "a b"}]},
            [("/rules/0/field", "path")],
        ),
        (
            {"rules": [{"id": "r", "kind": "first_seen", "field": "ip"}]},
            [("/rules/0/group_by", "path")],
        ),
        (
            {
                "rules": [
                    {
                        "id": "r",
                        "kind": "first_seen",
                        "field": "ip",
                        "group_by": "a",
                        "max_values": 0,
                        "max_groups": "x",
                    }
                ]
            },
            [("/rules/0/max_values", "value"), ("/rules/0/max_groups", "value")],
        ),
        ({"rules": [{"id": "r", "kind": "absence", "by": "25:00"}]}, [("/rules/0/by", "value")]),
        ({"rules": [{"id": "r", "kind": "absence", "by": 600}]}, [("/rules/0/by", "value")]),
        (
            {
                "rules": [
                    {
                        "id": "r",
                        "kind": "absence",
                        "by": "06:00",
                        "timezone": "Nowhere/Else",
                        "days": ["someday"],
                        "grace": "13h",
                    }
                ]
            },
            [
                ("/rules/0/timezone", "timezone"),
                ("/rules/0/days", "value"),
                ("/rules/0/grace", "value"),
            ],
        ),
        (
            {"rules": [{"id": "r", "kind": "absence", "by": "06:00", "days": []}]},
            [("/rules/0/days", "value")],
        ),
        (
            {"rules": [{"id": "r", "kind": "absence", "by": "06:00", "timezone": 3}]},
            [("/rules/0/timezone", "timezone")],
        ),
        ({"schedules": {"Bad Name": {}}}, [("/schedules/Bad Name", "name")]),
        ({"schedules": {"s": []}}, [("/schedules/s", "type")]),
        ({"schedules": {"s": {"windows": []}}}, [("/schedules/s/windows", "type")]),
        (
            {
                "schedules": {
                    "s": {"timezone": "Nowhere/Else", "windows": [{"from": "08:00", "to": "09:00"}]}
                }
            },
            [("/schedules/s/timezone", "timezone")],
        ),
        ({"schedules": {"s": {"windows": [3]}}}, [("/schedules/s/windows/0", "type")]),
        (
            {"schedules": {"s": {"windows": [{"from": "08:00"}]}}},
            [("/schedules/s/windows/0", "window")],
        ),
        (
            {"schedules": {"s": {"windows": [{"from": "8", "to": "09:00"}]}}},
            [("/schedules/s/windows/0", "window")],
        ),
        (
            {
                "schedules": {
                    "s": {"windows": [{"from": "08:00", "to": "09:00", "days": "someday"}]}
                }
            },
            [("/schedules/s/windows/0", "window")],
        ),
        (
            {"schedules": {"s": {"windows": [{"start": "2026-12-01T00:00:00Z"}]}}},
            [("/schedules/s/windows/0", "window")],
        ),
        (
            {
                "schedules": {
                    "s": {
                        "windows": [
                            {"start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
                        ]
                    }
                }
            },
            [("/schedules/s/windows/0", "window")],
        ),
        (
            {"schedules": {"s": {"windows": [{"start": 1, "end": 2}]}}},
            [("/schedules/s/windows/0", "window")],
        ),
    ],
)
def test_every_problem_is_named_at_its_place(
    document: Any, expected: list[tuple[str, str]]
) -> None:
    assert problems(document) == expected


def test_a_valid_document_compiles_with_defaults_and_tenants() -> None:
    rules = parse(
        {
            "version": 1,
            "defaults": {"severity": "high", "sinks": ["hook"]},
            "sinks": [{"name": "hook", "type": "webhook", "url": "http://x", "secret_env": "S"}],
            "rules": [
                {
                    "id": "a",
                    "kind": "count",
                    "when": {"event_type": "x.y"},
                    "window": 60,
                    "threshold": 2,
                },
                {"id": "b", "kind": "match", "tenants": ["acme"], "sinks": [], "severity": "low"},
                {
                    "id": "c",
                    "kind": "sum",
                    "field": "data.n",
                    "window": "1m",
                    "threshold": 1.5,
                    "group_by": ["actor.id", "data.k"],
                },
                {"id": "d", "kind": "match", "enabled": False},
            ],
            "disable": ["c"],
        }
    )
    a, b = rules.rules
    assert (a.severity, a.sinks, a.window_ms, a.dedup_ms, a.event_types) == (
        "high",
        ("hook",),
        60_000,
        60_000,
        ("x.y",),
    )
    assert a.group({}) == "" and repr(a) == "Rule('a', kind='count')"
    assert (b.severity, b.sinks, b.tenants, b.dedup_ms) == ("low", (), ("acme",), 0)
    assert rules.sinks[0].options == {"url": "http://x", "secret_env": "S"}
    assert [rule.id for rule in rules.for_tenant("other").rules] == ["a"]
    assert rules.rule("b") is b and rules.rule("zz") is None
    assert parse({}).rules == () and parse({"sinks": []}).rules[0:] == ()


def test_no_default_sinks_means_every_sink() -> None:
    rules = parse(
        {"sinks": [{"name": "a", "type": "slack"}, {"name": "b", "type": "email"}], **match({})}
    )
    assert rules.rules[0].sinks == ("a", "b")


def test_group_keys_name_each_field_and_skip_events_without_them() -> None:
    document = {
        "rules": [{"id": "r", "kind": "first_seen", "field": "ip", "group_by": ["actor.id", "n"]}]
    }
    group = parse(document).rules[0].group
    assert group({"actor": {"id": "u"}, "n": 2}) == "actor.id=u,n=2"
    assert group({"actor": {"id": "u"}}) is None
    assert group({"actor": {"id": "u"}, "n": None}) is None
    assert group({"actor": {"id": "u"}, "n": {"x": 1}}) is None


def test_packs_give_rules_and_schedules_that_a_document_overrides_and_disables() -> None:
    pack = {
        "schedules": {"hours": {"windows": [{"from": "09:00", "to": "17:00"}]}},
        "rules": [
            {"id": "p.one", "kind": "match", "outside": "hours", "severity": "low"},
            {"id": "p.two", "kind": "match"},
            {"id": "p.three", "kind": "match", "enabled": False},
        ],
    }
    document = {
        "packs": ["mine"],
        "schedules": {"hours": {"windows": [{"from": "00:00", "to": "23:59"}]}},
        "overrides": {"p.one": {"severity": "critical"}, "p.three": {"enabled": True}},
        "disable": ["p.two"],
    }
    rules = parse(document, {"mine": pack})
    assert [(rule.id, rule.severity) for rule in rules.rules] == [
        ("p.one", "critical"),
        ("p.three", "medium"),
    ]
    # the document's business hours cover 23:00, so the pack's rule stays quiet then
    assert rules.rules[0].test({"occurred_at": "2026-12-01T23:00:00Z"}) is False
    assert problems({"packs": ["mine"]}, {"mine": {"rules": 1, "schedules": 2}}) == [
        ("pack mine/rules", "type"),
        ("pack mine/schedules", "type"),
    ]


def test_schedules_in_a_time_zone_across_midnight_and_absolute_windows() -> None:
    document = {
        "schedules": {
            "nights": {
                "timezone": "Europe/Berlin",
                "windows": [{"days": ["fri"], "from": "22:00", "to": "06:00"}],
            },
            "freeze": {
                "windows": [{"start": "2026-12-24T00:00:00Z", "end": datetime(2026, 12, 27)}],
            },
            "aware": {
                "windows": [
                    {
                        "start": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1))),
                        "end": "2026-01-02T00:00:00Z",
                    }
                ],
            },
        },
        "rules": [
            {"id": "n", "kind": "match", "inside": "nights"},
            {"id": "f", "kind": "match", "inside": "freeze"},
            {"id": "a", "kind": "match", "inside": "aware"},
        ],
    }
    night, freeze, aware = parse(document).rules

    def at(rule: Any, text: str) -> bool:
        return bool(rule.test({"occurred_at": text}))

    assert at(night, "2026-12-04T21:30:00Z")  # Friday 22:30 in Berlin
    assert at(night, "2026-12-05T04:59:00Z")  # Saturday 05:59 in Berlin, the night of Friday
    assert not at(night, "2026-12-05T05:00:00Z")  # Saturday 06:00
    assert not at(night, "2026-12-05T21:30:00Z")  # Saturday 22:30: not a listed night
    assert not at(night, "2026-12-04T04:00:00Z")  # Friday 05:00: Thursday's night
    assert not at(night, "2026-12-04T12:00:00Z")
    assert at(freeze, "2026-12-26T23:59:59Z") and not at(freeze, "2026-12-27T00:00:00Z")
    assert at(aware, "2025-12-31T23:00:00Z") and not at(aware, "2025-12-31T22:59:59Z")
    assert not freeze.test({}) and not freeze.test({"occurred_at": 5})
    assert not freeze.test({"occurred_at": "yesterday"})
    assert Window().contains(0, 3, 0) is True  # from = to: the whole day


def test_a_condition_failing_before_the_schedule_is_read() -> None:
    rules = parse(
        {
            "schedules": {"always": {"windows": [{"from": "00:00", "to": "00:00"}]}},
            "rules": [{"id": "r", "kind": "match", "when": {"a": 1}, "inside": "always"}],
        }
    )
    assert rules.rules[0].test({"a": 2, "occurred_at": "2026-12-01T10:00:00Z"}) is False
    assert rules.rules[0].test({"a": 1, "occurred_at": "2026-12-01T10:00:00Z"}) is True


def test_zone_lookups_that_fail_with_key_errors_are_problems_too() -> None:
    def strict(name: str) -> tzinfo:
        if name != "UTC":
            raise KeyError(name)
        return UTC

    with pytest.raises(InvalidRules):
        parse_rules(
            {"schedules": {"s": {"timezone": "X", "windows": [{"from": "00:00", "to": "01:00"}]}}},
            zone=strict,
        )
    assert parse_rules({}, zone=strict).rules == ()


def test_rules_name_the_paths_they_read_and_which_personal_values_they_may_read() -> None:
    rules = parse(
        {
            "rules": [
                {
                    "id": "ip",
                    "kind": "first_seen",
                    "when": {
                        "action": "login",
                        "any_of": [{"outcome": "success"}, {"not": {"data.flag": True}}],
                        "all_of": [{"changes.field": "role"}],
                    },
                    "group_by": "actor.id",
                    "field": "context.ip",
                },
                {"id": "all", "kind": "match"},
            ]
        }
    )
    assert rules.rules[0].reads == (
        "action",
        "actor.id",
        "changes.field",
        "context.ip",
        "data.flag",
        "outcome",
    )
    assert rules.rules[1].reads == ()
    read = ["/context/ip", "/context", "/data/flag/x", "/changes/0/before", "/occurred_at"]
    unread = ["/actor/name", "/data/email", "/context/user_agent", "/target/id"]
    assert [rules.may_read(pointer) for pointer in read] == [True] * len(read)
    assert [rules.may_read(pointer) for pointer in unread] == [False] * len(unread)
    assert rules.may_read("not a pointer")  # read, to be safe
    assert not RuleSet().may_read("/actor/name") and RuleSet().may_read("/event_type")
