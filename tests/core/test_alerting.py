"""The evaluator: windows, first-seen, de-duplication, rate limits, absence, state, ids."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from indelible.core.alerting import Evaluator, Firing, alert_event, alert_id
from indelible.core.event import parse_timestamp, validate_event
from indelible.core.rules import RuleSet, parse_rules

MIN = 60_000
DAY = 86_400_000


def ruleset(*rules: dict[str, Any]) -> RuleSet:
    return parse_rules({"rules": list(rules)}, zone=ZoneInfo)


def refund(actor: str = "u-1", amount: Any = 1, **more: Any) -> dict[str, Any]:
    return {
        "event_type": "refund.created",
        "actor": {"id": actor},
        "data": {"amount": amount},
        **more,
    }


COUNT = {
    "id": "spike",
    "kind": "count",
    "when": {"event_type": "refund.created"},
    "group_by": "actor.id",
    "window": "10m",
    "threshold": 3,
}


def fire(evaluator: Evaluator, events: list[tuple[dict[str, Any], int]]) -> list[Firing]:
    found: list[Firing] = []
    for seq, (event, at) in enumerate(events):
        found += evaluator.evaluate(event, seq, at)
    return found


def test_a_count_fires_at_its_threshold_within_the_window_then_is_deduplicated() -> None:
    evaluator = Evaluator(ruleset(COUNT))
    fired = fire(
        evaluator, [(refund(), 0), (refund(), MIN), (refund("u-2"), MIN), (refund(), 2 * MIN)]
    )
    assert [(f.rule.id, f.group, f.seq, f.detail["count"]) for f in fired] == [
        ("spike", "actor.id=u-1", 3, 3)
    ]
    assert fired[0].detail == {"count": 3, "threshold": 3, "window_s": 600.0, "seqs": [0, 1, 3]}
    assert evaluator.evaluate(refund(), 9, 3 * MIN) == []  # de-duplicated for the window
    assert evaluator.suppressed == 1
    # 11 minutes after the first: the window holds the last three, the mark expired
    # past 12 minutes the window holds the refunds of minute 3 and now: two
    assert evaluator.evaluate(refund(), 10, 12 * MIN + 1) == []
    assert len(evaluator.evaluate(refund(), 11, 12 * MIN + 2)) == 1  # three; the mark expired
    assert evaluator.evaluate({"event_type": "other"}, 12, 0) == []
    assert evaluator.evaluate(refund(actor=None), 13, 0) == []  # no group: not counted
    assert Evaluator(ruleset(COUNT, ABSENCE)).due(0) == []  # only absence rules are due


def test_a_sum_adds_numbers_and_numeric_strings_and_skips_the_rest() -> None:
    rule = {
        "id": "credits",
        "kind": "sum",
        "when": {"event_type": "refund.created"},
        "group_by": "actor.id",
        "field": "data.amount",
        "window": "1h",
        "threshold": 100,
    }
    evaluator = Evaluator(ruleset(rule))
    fired = fire(
        evaluator,
        [(refund(amount="60.5"), 0), (refund(amount="lots"), 1), (refund(amount=39.5), 2)],
    )
    assert [f.detail["sum"] for f in fired] == [100]
    assert fired[0].detail["field"] == "data.amount" and fired[0].detail["count"] == 2
    evaluator = Evaluator(ruleset(rule))
    fired = fire(evaluator, [(refund(amount=99.25), 0), (refund(amount=1), 1)])
    assert fired[0].detail["sum"] == 100.25


GRANT = {
    "id": "grant",
    "kind": "match",
    "when": {"event_type": "role.granted"},
    "group_by": "data.txid",
    "dedup": "1m",
    "max_per_hour": 2,
}


def grant(txid: int) -> dict[str, Any]:
    return {"event_type": "role.granted", "data": {"txid": txid}}


def test_match_rules_are_deduplicated_and_rate_limited_per_group() -> None:
    evaluator = Evaluator(ruleset(GRANT))
    flood = [(grant(1), 0), (grant(1), 1), (grant(1), MIN), (grant(1), 2 * MIN)]
    fired = fire(evaluator, [*flood, (grant(2), 2 * MIN + 1), (grant(1), 3 * MIN)])
    # txid 1: fired, de-duplicated, fired, rate limited (2 an hour), rate limited;
    # txid 2 of the same rule is not held back by txid 1's flood
    assert [(f.group, f.at_ms) for f in fired] == [
        ("data.txid=1", 0),
        ("data.txid=1", MIN),
        ("data.txid=2", 2 * MIN + 1),
    ]
    assert evaluator.suppressed == 3
    changes = evaluator.take_changes()
    assert changes["rl\x1fgrant\x1fdata.txid=1"] == f"[0,{MIN}]"
    assert changes["rl\x1fgrant\x1fdata.txid=2"] == f"[{2 * MIN + 1}]"
    assert [f.group for f in fire(evaluator, [(grant(1), 60 * MIN + 1)])] == ["data.txid=1"]
    plain = Evaluator(ruleset({"id": "m", "kind": "match", "when": {"event_type": "role.granted"}}))
    assert [f.group for f in fire(plain, [({"event_type": "role.granted"}, 0)] * 2)] == ["", ""]


def test_rate_limits_survive_a_restart_and_the_per_rule_form_is_replaced() -> None:
    plain = {"id": "m", "kind": "match", "when": {"event_type": "role.granted"}, "max_per_hour": 2}
    rules = ruleset(GRANT, plain)
    evaluator = Evaluator(rules)
    fire(evaluator, [(grant(1), 0), (grant(1), MIN)])
    state = {k: v for k, v in evaluator.take_changes().items() if v is not None}
    restored = Evaluator(rules, state)
    assert restored.take_changes() == {}
    fired = fire(restored, [(grant(1), 2 * MIN), (grant(2), 2 * MIN)])
    assert [(f.rule.id, f.group) for f in fired] == [("grant", "data.txid=2")]
    assert restored.suppressed == 3  # txid 1 (once) and the rule m (twice): still at limit
    # the older per-rule form: dropped for a grouped rule, carried to the group "" otherwise
    old = Evaluator(rules, {"rl\x1fgrant": "[0,1]", "rl\x1fm": "[0,1]"})
    assert old.take_changes() == {
        "rl\x1fgrant": None,
        "rl\x1fm": None,
        "rl\x1fm\x1f": "[0,1]",
    }
    fired = fire(old, [(grant(1), 2)])  # m is at its limit of 2, carried over
    assert [(f.rule.id, f.group) for f in fired] == [("grant", "data.txid=1")]
    assert old.suppressed == 1


def test_first_seen_learns_each_groups_first_value_and_is_bounded() -> None:
    rule = {
        "id": "ip",
        "kind": "first_seen",
        "when": {"action": "login"},
        "group_by": "actor.id",
        "field": "context.ip",
        "max_values": 2,
        "max_groups": 2,
    }
    evaluator = Evaluator(ruleset(rule))

    def login(actor: str, ip: Any) -> dict[str, Any]:
        return {"action": "login", "actor": {"id": actor}, "context": {"ip": ip}}

    fired = fire(
        evaluator,
        [
            (login("a", "1"), 0),
            (login("a", "1"), 1),
            (login("a", "2"), 2),
            (login("a", "3"), 3),
            (login("a", None), 4),
            (login("a", ["x"]), 5),
        ],
    )
    assert [f.detail for f in fired] == [
        {"field": "context.ip", "value": "2", "known": ["1"]},
        {"field": "context.ip", "value": "3", "known": ["1", "2"]},
    ]
    assert evaluator.take_changes()["fs\x1fip\x1factor.id=a"] == '["2","3"]'  # the oldest dropped
    fire(evaluator, [(login("b", "1"), 6), (login("c", "1"), 7)])  # a third group evicts "a"
    assert evaluator.take_changes()["fs\x1fip\x1factor.id=a"] is None
    assert fire(evaluator, [(login("a", "9"), 8)]) == []  # learned again, not alerted
    limited = Evaluator(ruleset({**rule, "max_per_hour": 1}))
    fired = fire(limited, [(login("a", "1"), 0), (login("a", "2"), 1), (login("a", "3"), 2)])
    assert [f.detail["value"] for f in fired] == ["2"] and limited.suppressed == 1


def test_state_round_trips_and_unknown_or_mismatched_keys_are_ignored() -> None:
    first_seen = {
        "id": "ip",
        "kind": "first_seen",
        "when": {"action": "login"},
        "group_by": "actor.id",
        "field": "ip",
    }
    rules = ruleset(COUNT, first_seen)
    evaluator = Evaluator(rules)
    fire(evaluator, [({"action": "login", "actor": {"id": "a"}, "ip": "1"}, 0)])
    fire(evaluator, [(refund(), t) for t in (1, 2, 3)])
    state = {k: v for k, v in evaluator.take_changes().items() if v is not None}
    state |= {
        "fs\x1fgone\x1fx": "[]",
        "fs\x1fspike\x1fx": "[]",
        "ab\x1fspike": "{}",
        "zz\x1fip": "1",
    }
    restored = Evaluator(rules, state)
    assert restored.evaluate(refund(), 5, 4) == []  # the de-duplication mark was kept
    assert restored.evaluate({"action": "login", "actor": {"id": "a"}, "ip": "2"}, 6, 5) != []
    assert restored.max_window_ms == 600_000 and Evaluator(RuleSet()).max_window_ms == 0


def test_warming_rebuilds_windows_without_firing_or_changing_state() -> None:
    evaluator = Evaluator(
        ruleset(COUNT, {"id": "m", "kind": "match", "when": {"event_type": "refund.created"}})
    )
    for seq in range(2):
        evaluator.warm(refund(), seq, seq)
    evaluator.warm(refund("u-9", event_type="other"), 2, 2)
    assert evaluator.take_changes() == {}
    fired = evaluator.evaluate(refund(), 3, 3)
    assert sorted(f.rule.id for f in fired) == ["m", "spike"]


def test_sweeps_forget_idle_windows_and_expired_marks() -> None:
    rules = ruleset(COUNT, {"id": "m", "kind": "match", "when": {"event_type": "x"}})
    evaluator = Evaluator(rules)
    fire(evaluator, [(refund("old"), t) for t in (0, 1, 2)])
    evaluator.take_changes()
    for n in range(65_536):
        evaluator.evaluate({"event_type": "x"}, n, 3_600_000 + n)
    changes = evaluator.take_changes()
    assert changes["dd\x1fspike\x1factor.id=old"] is None
    assert changes["rl\x1fspike\x1factor.id=old"] is None
    assert "actor.id=old" not in evaluator._windows["spike"]
    assert list(evaluator._fired) == ["m\x1f"]  # fired within the hour: kept
    empty = Evaluator(rules, {"rl\x1fm\x1f": "[]"})
    for n in range(65_536):
        empty.evaluate(refund(actor=None), n, 0)
    assert empty._fired == {} and empty.take_changes() == {"rl\x1fm\x1f": None}


def test_rules_by_event_type_are_cached_up_to_a_bound() -> None:
    evaluator = Evaluator(ruleset({"id": "any", "kind": "match", "when": {"outcome": "failure"}}))
    for n in range(10_050):
        evaluator.evaluate({"event_type": f"t.n{n}", "outcome": "success"}, n, n)
    assert len(evaluator._by_type) == 10_000
    assert evaluator.evaluate({"event_type": 5, "outcome": "failure"}, 0, 0) != []


ABSENCE = {
    "id": "run",
    "kind": "absence",
    "when": {"event_type": "billing.run_completed"},
    "by": "06:00",
    "timezone": "Europe/Berlin",
    "days": ["mon", "tue", "wed", "thu", "fri"],
    "grace": "10m",
}


def run(at: str) -> dict[str, Any]:
    return {"event_type": "billing.run_completed", "occurred_at": at}


def ms(text: str) -> int:
    return parse_timestamp(text)


def test_absence_fires_for_each_watched_weekday_without_the_event_by_its_deadline() -> None:
    evaluator = Evaluator(ruleset(ABSENCE))
    assert evaluator.due(ms("2026-11-30T12:00:00Z")) == []  # Monday: starts watching
    evaluator.evaluate(run("2026-12-01T04:00:00Z"), 0, 0)  # Tue 05:00 Berlin: on time
    evaluator.evaluate(run("2026-12-02T05:30:00Z"), 1, 0)  # Wed 06:30 Berlin: too late
    evaluator.evaluate(run("2026-12-03T04:00:00Z"), 2, 0)
    evaluator.evaluate(run("2026-12-03T04:30:00Z"), 3, 0)  # the same day again
    evaluator.evaluate({"event_type": "billing.run_completed", "occurred_at": "soon"}, 4, 0)
    evaluator.evaluate({"event_type": "billing.run_completed"}, 5, 0)
    assert evaluator.due(ms("2026-12-01T05:05:00Z")) == []  # Tue 06:05: within the grace
    # Monday 7th 06:10 Berlin: Wed 2nd and Fri 4th had none; the weekend is not watched
    fired = evaluator.due(ms("2026-12-07T05:10:00Z"))
    assert [(f.group, f.at_ms) for f in fired] == [
        ("2026-12-02", ms("2026-12-02T05:10:00Z")),
        ("2026-12-04", ms("2026-12-04T05:10:00Z")),
        ("2026-12-07", ms("2026-12-07T05:10:00Z")),
    ]
    assert fired[0].detail == {"date": "2026-12-02", "by": "06:00", "timezone": "Europe/Berlin"}
    assert evaluator.due(ms("2026-12-07T06:00:00Z")) == []  # checked already
    state = evaluator.take_changes()["ab\x1frun"]
    restored = Evaluator(ruleset(ABSENCE), {"ab\x1frun": state})
    assert restored.due(ms("2026-12-07T07:00:00Z")) == []
    # after a long stop, at most a week back is reported
    assert len(restored.due(ms("2026-12-31T06:00:00Z"))) == 5


def test_alert_events_are_a_function_of_the_firing() -> None:
    rules = ruleset(COUNT, ABSENCE)
    trigger = {
        "event_id": "0193...",
        "event_type": "refund.created",
        "actor": {"id": "u-1"},
        "occurred_at": "2026-12-01T10:00:00.000Z",
    }
    firing = Firing(
        rules.rules[0], "actor.id=u-1", ms("2026-12-01T10:00:01Z"), 41, trigger, {"count": 3}
    )
    event = alert_event(firing, "example.com/acme")
    assert event == alert_event(firing, "example.com/acme")
    assert event["data"]["trigger"] == {
        k: trigger[k] for k in ("event_id", "event_type", "occurred_at", "actor")
    }
    assert event["data"]["seq"] == 41 and event["occurred_at"] == "2026-12-01T10:00:01.000Z"
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", event["event_id"]
    )
    assert event["event_id"] != alert_id("example.com/other", "spike", "actor.id=u-1", "41")
    validate_event(event, now_ms=ms("2026-12-01T10:00:02Z"))
    absent = alert_event(Firing(rules.rules[1], "2026-12-02", 5), "example.com/acme")
    assert "seq" not in absent["data"] and absent["event_id"] == alert_id(
        "example.com/acme", "run", "2026-12-02", "day:2026-12-02"
    )
