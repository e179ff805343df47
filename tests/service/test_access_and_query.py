"""Access (keys, roles, limiter), the hub of running logs, meta-audit writes and queries,
against a real SQLite store."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indelible.core.event import validate_batch
from indelible.errors import Forbidden, InputError, NotFound, RateLimited, Unauthenticated
from indelible.service.access import FailureLimiter, KeyRing, Permission, hash_token
from indelible.service.audit import AuditWriter, RequestInfo
from indelible.service.hub import Hub, HubOptions
from indelible.service.logs import init_log
from indelible.service.query import (
    EventFilter,
    entity_history,
    entity_state,
    export_rows,
    get_event,
    query_events,
)
from indelible.service.verify import verify_log
from indelible.storage.sqlite import SQLiteStore
from tests.factories import BASE_MS, billing_event, timestamp


def now() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    store = SQLiteStore(tmp_path / "log.db")
    init_log(
        store, tmp_path / "keys", "ops", "example.com/ops", clock_ms=now, random_bytes=os.urandom
    )
    running = Hub(store, tmp_path / "keys", HubOptions(now, os.urandom, checkpoint_interval=0.05))
    running.start()
    yield running
    running.close()
    store.close()


def test_a_key_authenticates_until_revoked_and_never_crosses_tenants(hub: Hub) -> None:
    other = hub.create("acme", "example.com/acme")
    ring = KeyRing(hub.store, clock_ms=now, random_bytes=os.urandom)
    row, token = ring.create(other.info.log_id, "reader", "dashboards", None)
    principal = ring.authenticate(token)
    assert (principal.log_name, principal.role, principal.operator) == ("acme", "reader", False)
    assert principal.allows(Permission.READ) and not principal.allows(Permission.INGEST)
    with pytest.raises(Forbidden):
        principal.require(Permission.EXPORT)
    with pytest.raises(NotFound):
        ring.get(hub.logs()[0].info.log_id, row.key_id)  # the operator cannot see it either
    with pytest.raises(Unauthenticated, match="unknown"):
        ring.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"))
    with pytest.raises(Unauthenticated, match="form"):
        ring.authenticate("Bearer nonsense")
    assert ring.revoke(other.info.log_id, row.key_id).revoked_at_ms is not None
    with pytest.raises(Unauthenticated, match="revoked"):
        ring.authenticate(token)
    secret = token.rsplit("_", 1)[1].encode()
    files = [p for p in hub.store.path.parent.iterdir() if p.name.startswith("log.db")]
    assert files and all(secret not in p.read_bytes() for p in files)
    assert hub.store.get_api_key(row.key_id).secret_hash == hash_token(token)


def test_only_operator_admins_manage_tenants() -> None:
    from indelible.service.access import Principal

    assert Principal("k", "n", "admin", 1, "ops", True).allows(Permission.TENANTS)
    assert not Principal("k", "n", "admin", 2, "acme", False).allows(Permission.TENANTS)
    assert not Principal("k", "n", "auditor", 1, "ops", True).allows(Permission.MANAGE)


def test_the_limiter_blocks_an_address_after_the_limit_until_the_window_passes() -> None:
    clock = [0.0]
    limiter = FailureLimiter(3, 60.0, clock=lambda: clock[0])
    assert [limiter.fail("203.0.113.9") for _ in range(3)] == [False, False, True]
    with pytest.raises(RateLimited) as caught:
        limiter.check("203.0.113.9")
    assert 0 < caught.value.retry_after <= 60
    limiter.check("198.51.100.1")  # another address is not affected
    clock[0] = 61.0
    limiter.check("203.0.113.9")


def _ingest(hub: Hub, events: list[dict[str, object]]) -> None:
    hub.logs()[0].append(validate_batch(events, now_ms=now()))


def test_queries_filter_page_by_keyset_both_ways_and_match_prefixes(hub: Hub) -> None:
    events = [billing_event(n) for n in range(30)]
    events[5]["event_type"] = "refund.created"
    _ingest(hub, events)
    log_id = hub.logs()[0].info.log_id
    store = hub.store
    seen: list[int] = []
    cursor = None
    while True:
        page = query_events(store, log_id, EventFilter(), limit=7, cursor=cursor)
        seen += [item["seq"] for item in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(range(30))
    down = query_events(store, log_id, EventFilter(actor_id="user-3"), limit=2, descending=True)
    assert [i["seq"] for i in down.items] == [24, 17] and down.next_cursor == "d17"
    with pytest.raises(InputError, match="other order"):
        query_events(store, log_id, EventFilter(), cursor="d17")
    refunds = query_events(store, log_id, EventFilter(event_type="refund.*"))
    assert [i["seq"] for i in refunds.items] == [5]
    invoices = query_events(store, log_id, EventFilter(event_type="invoice.*"))
    assert len(invoices.items) == 29
    assert get_event(store, log_id, events[3]["event_id"])["seq"] == 3  # type: ignore[arg-type]
    assert [row.seq for row in export_rows(store, log_id, EventFilter(), 12, chunk=5)] == list(
        range(13)
    )


def test_history_includes_related_records_and_state_at_t_reports_gaps(hub: Hub) -> None:
    def change(n: int, before: object, after: object, **extra: object) -> dict[str, object]:
        return billing_event(
            n,
            occurred_at=timestamp(BASE_MS + n * 1000),
            target={"type": "invoice", "id": "INV-X"},
            changes=[{"field": "status", "before": before, "after": after}],
            **extra,
        )

    events = [
        change(0, None, "draft", action="create"),
        change(1, "draft", "open"),
        change(2, "paid", "void"),  # the replayed state is "open": a gap
        billing_event(3, related=[{"type": "invoice", "id": "INV-X"}]),
    ]
    _ingest(hub, events)
    log_id = hub.logs()[0].info.log_id
    history = entity_history(hub.store, log_id, "invoice", "INV-X")
    assert [item["seq"] for item in history.items] == [0, 1, 2, 3]
    early = entity_state(hub.store, log_id, "invoice", "INV-X", BASE_MS + 1500, max_events=10)
    assert early.state.fields == {"status": "open"} and early.state.gaps == ()
    late = entity_state(hub.store, log_id, "invoice", "INV-X", BASE_MS + 9000, max_events=10)
    assert late.state.fields == {"status": "void"}
    assert [(g.seq, g.expected, g.found) for g in late.state.gaps] == [(2, "open", "paid")]
    report = verify_log(hub.store, hub.logs()[0].info, hub.logs()[0].opened.verifier)
    assert report.size == 4  # the related-record hints verify against the leaves


def test_server_written_events_are_durable_entries_of_the_tenant_log(hub: Hub) -> None:
    writer = AuditWriter(hub, clock_ms=now, random_bytes=os.urandom)
    operator = hub.logs()[0]
    receipt = writer.write(
        operator.info.log_id,
        "audit.read",
        actor={"id": "0123456789abcdef", "type": "service", "name": "reports"},
        action="read",
        request=RequestInfo(ip="203.0.113.7", reason="quarterly review"),
        data={"route": "/v1/events", "results": 0},
    )
    stored = get_event(hub.store, operator.info.log_id, receipt.event_id)
    assert stored["event"]["reason"] == "quarterly review"
    assert stored["event"]["context"] == {"source": "api", "ip": "203.0.113.7"}
