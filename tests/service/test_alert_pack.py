"""The shipped billing pack, rule by rule: a crafted scenario fires it, a benign twin stays
quiet. Each scenario goes through the real command, ``indelible rules test --json``."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest

from indelible.core.event import parse_timestamp, validate_event
from tests.conftest import run_cli
from tests.factories import event_id, timestamp

# 2026-12-01 is a Tuesday: the pack's pricing change window is Tue/Thu 09:00-12:00 UTC and
# its business hours Mon-Fri 07:00-19:00 UTC.
TUESDAY = "2026-12-01"
WEDNESDAY = "2026-12-02"
_ids = itertools.count()


def ev(
    event_type: str,
    at: str,
    *,
    actor: str = "u-1",
    actor_type: str = "user",
    action: str = "create",
    outcome: str = "success",
    **fields: Any,
) -> dict[str, Any]:
    body = {
        "event_id": event_id(next(_ids), 5),
        "event_type": event_type,
        "occurred_at": at,
        "actor": {"id": actor, "type": actor_type},
        "action": action,
        "outcome": outcome,
        **fields,
    }
    return validate_event(body, now_ms=parse_timestamp("2027-01-01T00:00:00Z")).body


def every(start: str, seconds: int, count: int) -> list[str]:
    base = parse_timestamp(start)
    return [timestamp(base + i * seconds * 1000) for i in range(count)]


def login(ip: str, at: str, outcome: str = "success") -> dict[str, Any]:
    return ev("auth.login", at, action="login", outcome=outcome, context={"ip": ip})


def db_change(txid: int, at: str, source: str = "db_trigger", actor_type: str = "db_role"):  # type: ignore[no-untyped-def]
    return ev(
        "invoice.updated",
        at,
        actor="billing_admin",
        actor_type=actor_type,
        action="update",
        context={"source": source},
        data={"txid": txid, "table": "public.invoices"},
    )


T = f"{WEDNESDAY}T10:00:00.000Z"
SCENARIOS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
    "billing.refund_spike": (
        [ev("refund.created", at) for at in every(T, 10, 21)],
        [ev("refund.created", at) for at in every(T, 10, 20)]
        + [ev("refund.created", at, actor="u-2") for at in every(T, 10, 20)]
        + [ev("refund.created", at, actor="u-3") for at in every(T, 60 * 6, 21)],
    ),
    "billing.mass_credits": (
        [
            ev("credit.created", at, data={"amount": amount})
            for at, amount in zip(every(T, 600, 3), ["2000.00", 2000, 1500], strict=True)
        ],
        [
            ev("credit.created", at, actor=actor, data={"amount": 2000})
            for at, actor in zip(every(T, 600, 3), ["u-1", "u-2", "u-3"], strict=True)
        ]
        + [ev("credit.created", at, data={"amount": 2000}) for at in every(T, 3600 * 2, 3)]
        + [
            ev(
                "credit.created",
                at,
                actor="billing-job",
                actor_type="service",
                data={"amount": 9e3},
            )
            for at in every(T, 60, 2)
        ],
    ),
    "billing.bulk_invoices_off_hours": (
        [ev("invoice.created", at, actor="job-7") for at in every(f"{WEDNESDAY}T22:00:00Z", 5, 50)],
        [ev("invoice.created", at, actor="job-7") for at in every(T, 5, 60)]
        + [
            ev("invoice.created", at, actor="job-8")
            for at in every(f"{WEDNESDAY}T22:00:00Z", 5, 49)
        ],
    ),
    "billing.pricing_change_outside_window": (
        [
            ev(
                "price.updated",
                f"{WEDNESDAY}T15:00:00Z",
                action="update",
                target={"type": "price", "id": "P-1"},
            )
        ],
        [
            ev(
                "price.updated",
                f"{TUESDAY}T10:30:00Z",
                action="update",
                target={"type": "price", "id": "P-1"},
            ),
            ev("plan.created", f"{TUESDAY}T11:59:00Z", target={"type": "plan", "id": "pro"}),
            ev("invoice.updated", f"{WEDNESDAY}T15:00:00Z", action="update"),
        ],
    ),
    "billing.direct_database_change": (
        [db_change(77, at) for at in every(T, 1, 3)] + [db_change(78, f"{WEDNESDAY}T10:05:00Z")],
        [db_change(77, at, source="app", actor_type="user") for at in every(T, 1, 3)]
        + [db_change(79, T, source="app", actor_type="db_role")],
    ),
    "auth.failed_login_burst": (
        [login("198.51.100.9", at, "failure") for at in every(T, 20, 10)],
        [login("198.51.100.9", at, "failure") for at in every(T, 20, 9)]
        + [login("198.51.100.10", at, "failure") for at in every(T, 60, 10)]
        + [login("198.51.100.11", at) for at in every(T, 1, 12)],
    ),
    "access.privilege_granted": (
        [
            ev(
                "role.granted",
                T,
                target={"type": "user", "id": "u-9"},
                data={"role": "billing_admin"},
            ),
            ev(
                "user.updated",
                T,
                action="update",
                changes=[{"field": "role", "before": "viewer", "after": "admin"}],
            ),
            ev(
                "audit.key_created",
                T,
                actor="indelible",
                actor_type="system",
                data={"role": "admin", "name": "ops"},
            ),
        ],
        [
            ev(
                "user.updated",
                T,
                action="update",
                changes=[{"field": "email", "before": "a@x", "after": "b@x"}],
            ),
            ev(
                "audit.key_created",
                T,
                actor="indelible",
                actor_type="system",
                data={"role": "reader", "name": "bi"},
            ),
        ],
    ),
    "audit.mass_read": (
        [
            ev("audit.read", at, actor="key-1", action="read", data={"results": n})
            for at, n in zip(every(T, 60, 2), [6000, 5000], strict=True)
        ],
        [
            ev("audit.read", at, actor="key-1", action="read", data={"results": n})
            for at, n in zip(every(T, 60, 2), [6000, 3000], strict=True)
        ]
        + [
            ev("audit.read", at, actor="key-2", action="read", data={"results": 6000})
            for at in every(T, 60 * 20, 2)
        ],
    ),
    "audit.mass_export": (
        [ev("audit.exported", at, actor="key-1", action="export") for at in every(T, 300, 10)],
        [ev("audit.exported", at, actor="key-1", action="export") for at in every(T, 300, 9)],
    ),
    "auth.new_login_address": (
        [
            login(ip, at)
            for ip, at in zip(
                ["203.0.113.1", "203.0.113.1", "203.0.113.2"], every(T, 60, 3), strict=True
            )
        ],
        [login("203.0.113.1", at) for at in every(T, 60, 3)]
        + [login("203.0.113.2", at, "failure") for at in every(T, 60, 1)],
    ),
}


def rules_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text("packs: [billing]\n" + extra, encoding="utf-8")
    return path


def trial(tmp_path: Path, rules: Path, events: list[dict[str, Any]], *more: str) -> dict[str, Any]:
    events = sorted(events, key=lambda event: event["occurred_at"])
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    result = run_cli("rules", "test", str(rules), "--against", str(source), "--json", *more)
    assert result.code == 0, result.stdout + result.stderr
    report: dict[str, Any] = orjson.loads(result.stdout)
    return report


@pytest.mark.parametrize("rule", sorted(SCENARIOS))
def test_each_rule_of_the_pack_fires_on_its_scenario_and_not_on_a_benign_one(
    tmp_path: Path, rule: str
) -> None:
    crafted, benign = SCENARIOS[rule]
    rules = rules_file(tmp_path)
    fired = trial(tmp_path, rules, crafted)
    # one alert per database transaction; one per grant; one per rule and group otherwise
    expected = {"billing.direct_database_change": 2, "access.privilege_granted": 3}.get(rule, 1)
    assert fired["by_rule"] == {rule: expected}, fired
    assert trial(tmp_path, rules, benign)["by_rule"] == {}


def test_the_missing_billing_run_fires_for_the_day_without_one(tmp_path: Path) -> None:
    rules = rules_file(tmp_path, "overrides: {billing.run_missing: {enabled: true}}\n")
    runs = [
        ev(
            "billing.run_completed",
            f"2026-12-0{day}T0{hour}:00:00Z",
            actor="billing",
            actor_type="job",
        )
        for day, hour in ((1, 3), (3, 4), (4, 7))  # none on the 2nd; the 4th's came too late
    ]
    report = trial(tmp_path, rules, runs, "--now", "2026-12-04T08:00:00Z")
    assert [item["group"] for item in report["fired"]] == ["2026-12-02", "2026-12-04"]
    on_time = runs[:2] + [
        ev("billing.run_completed", f"2026-12-0{day}T05:00:00Z", actor="billing", actor_type="job")
        for day in (2, 4)
    ]
    assert trial(tmp_path, rules, on_time, "--now", "2026-12-04T08:00:00Z")["alerts"] == 0


def test_the_pack_is_valid_and_every_rule_of_it_has_a_scenario(tmp_path: Path) -> None:
    rules = rules_file(tmp_path, "overrides: {billing.run_missing: {enabled: true}}\n")
    result = run_cli("rules", "validate", str(rules), "--json")
    assert result.code == 0, result.stderr
    ids = {rule["id"] for rule in orjson.loads(result.stdout)["rules"]}
    assert ids == set(SCENARIOS) | {"billing.run_missing"}
