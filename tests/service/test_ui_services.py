"""Services the web UI reads through: the step cache behind state at T, free-text search,
hourly counts and the record of the last full verification; against a real SQLite store."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indelible.core.event import validate_batch
from indelible.errors import InputError, LimitExceeded
from indelible.service.activity import HOUR_MS, SETTLE_MS, HourlyCounts
from indelible.service.hub import Hub, HubOptions
from indelible.service.logs import init_log
from indelible.service.query import EventFilter, entity_state, query_events, search_text
from indelible.service.stepcache import StepCache
from indelible.service.verification import last_verification, verify_and_record
from indelible.storage.base import EntryQuery
from indelible.storage.sqlite import SQLiteStore
from tests.factories import BASE_MS, billing_event, timestamp


class Clock:
    def __init__(self) -> None:
        self.ms = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub(tmp_path: Path, clock: Clock) -> Iterator[Hub]:
    store = SQLiteStore(tmp_path / "log.db")
    init_log(
        store, tmp_path / "keys", "ops", "example.com/ops", clock_ms=clock, random_bytes=os.urandom
    )
    running = Hub(store, tmp_path / "keys", HubOptions(clock, os.urandom, checkpoint_interval=0.05))
    running.start()
    yield running
    running.close()
    store.close()


def ingest(hub: Hub, events: list[dict[str, Any]]) -> None:
    hub.logs()[0].append(validate_batch(events, now_ms=time.time_ns() // 1_000_000))


def record_events(rng: random.Random, start: int, count: int) -> list[dict[str, Any]]:
    """Changes of INV-R at random times (some backdated), some with personal values."""
    events = []
    for n in range(start, start + count):
        status = rng.choice(["draft", "open", "paid", "void"])
        changes: list[dict[str, Any]] = [
            {"field": "status", "before": rng.choice(["draft", "open"]), "after": status}
        ]
        if n % 4 == 0:
            changes.append(
                {"field": "email", "before": f"a{n}@example.com", "after": f"b{n}@example.com"}
            )
        event = billing_event(
            n,
            occurred_at=timestamp(BASE_MS + rng.randrange(0, 100) * 1000),
            target={"type": "invoice", "id": "INV-R"},
            changes=changes,
            action="create" if n == start == 0 else "update",
        )
        if n % 4 == 0:
            event["personal"] = ["/changes/1/after", "/changes/1/before"]
        events.append(event)
    return events


def test_the_step_cache_answers_exactly_as_a_fresh_replay(hub: Hub) -> None:
    rng = random.Random(3)
    store, log_id = hub.store, hub.logs()[0].info.log_id
    cache = StepCache()
    ingest(hub, [*record_events(rng, 0, 30), billing_event(500)])
    times = [BASE_MS + rng.randrange(-5, 105) * 1000 for _ in range(15)]
    for round_ in range(3):
        for at in times:
            fresh = entity_state(store, log_id, "invoice", "INV-R", at, max_events=1000)
            cached = entity_state(
                store, log_id, "invoice", "INV-R", at, max_events=1000, cache=cache
            )
            assert cached.to_dict() == fresh.to_dict(), (round_, at)
        ingest(hub, record_events(rng, 100 + 20 * round_, 20))  # new and backdated events
    held = cache._records[(log_id, "invoice", "INV-R")]
    rows = store.query_entries(log_id, EntryQuery(target_type="invoice", target_id="INV-R"))
    with_personal = [row.seq for row in rows if row.personal and row.seq <= 70]
    assert held.personal == with_personal and len(with_personal) == 18  # decoded on each use
    assert len(held.steps) + len(held.personal) == 30 + 40  # the last 20 not yet caught up


def test_the_step_cache_steps_aside_for_a_record_past_the_limit(hub: Hub) -> None:
    store, log_id = hub.store, hub.logs()[0].info.log_id
    ingest(hub, record_events(random.Random(5), 0, 12))
    cache = StepCache()
    at = BASE_MS + 200_000
    with pytest.raises(LimitExceeded):
        entity_state(store, log_id, "invoice", "INV-R", at, max_events=10, cache=cache)
    assert not cache._records  # not cached: too many in all
    early = entity_state(store, log_id, "invoice", "INV-R", BASE_MS - 1, max_events=10, cache=cache)
    assert early.events == 0
    small = StepCache(max_steps=5)  # room for less than the record: kept nowhere, still right
    fresh = entity_state(store, log_id, "invoice", "INV-R", at, max_events=100)
    assert (
        entity_state(store, log_id, "invoice", "INV-R", at, max_events=100, cache=small).to_dict()
        == fresh.to_dict()
    )
    assert not small._records


def test_free_text_search_pages_without_skipping_or_repeating(hub: Hub) -> None:
    ingest(hub, [billing_event(n) for n in range(40)])
    store, log_id = hub.store, hub.logs()[0].info.log_id
    wanted = [n for n in range(40) if n % 11 == 4]  # data.customer_id "cus-4"
    found, cursor, pages = [], None, 0
    while True:
        page = search_text(
            store, log_id, EventFilter(), "CUS-4", limit=2, cursor=cursor, max_scan=7
        )
        found += [item["seq"] for item in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert found == wanted and pages > len(wanted) // 2
    backwards = search_text(store, log_id, EventFilter(), "cus-4", limit=10, descending=True)
    assert [item["seq"] for item in backwards.items] == wanted[::-1]
    both = search_text(store, log_id, EventFilter(actor_id="user-4"), "cus-4", limit=10)
    assert [item["seq"] for item in both.items] == [n for n in wanted if n % 7 == 4]
    for bad in ("  ",):
        with pytest.raises(InputError):
            search_text(store, log_id, EventFilter(), bad)
    with pytest.raises(InputError):
        search_text(store, log_id, EventFilter(), "x", limit=0)
    assert query_events(store, log_id, EventFilter(), limit=40).items[4]["seq"] == 4


def test_hourly_counts_cache_only_settled_hours(hub: Hub, clock: Clock) -> None:
    store, log_id = hub.store, hub.logs()[0].info.log_id
    hour = clock.ms - clock.ms % HOUR_MS
    clock.ms = hour - 2 * HOUR_MS + 10  # two hours ago
    ingest(hub, [billing_event(n) for n in range(3)])
    clock.ms = hour + 1_000  # this hour, just begun
    ingest(hub, [billing_event(n) for n in range(3, 5)])
    counts = HourlyCounts(store)
    shown = counts.last_hours(log_id, clock.ms, 3)
    assert [(h.start_ms - hour) // HOUR_MS for h in shown] == [-2, -1, 0]
    assert [h.count for h in shown] == [3, 0, 2]
    assert set(counts._settled) == {(log_id, hour - 2 * HOUR_MS)}  # the last hour: not settled yet
    ingest(hub, [billing_event(n) for n in range(5, 9)])
    assert [h.count for h in counts.last_hours(log_id, clock.ms, 3)] == [3, 0, 6]
    later = hour + SETTLE_MS + 1
    counts.last_hours(log_id, later, 3)
    assert (log_id, hour - HOUR_MS) in counts._settled
    assert store.count_entries(log_id, EntryQuery()) == 9


def test_the_last_verification_is_recorded_passed_or_failed(hub: Hub, clock: Clock) -> None:
    store = hub.store
    served = hub.logs()[0]
    assert last_verification(store, served.info.log_id) is None
    ingest(hub, [billing_event(n) for n in range(3)])
    result = verify_and_record(
        store, served.info, served.opened.verifier, by="tester", clock_ms=clock
    )
    record = last_verification(store, served.info.log_id)
    assert result["ok"] is True and record is not None
    assert record["ok"] is True and record["by"] == "tester" and record["result"] == result
    store.set_log_setting(served.info.log_id, "last_verification", "[1]")
    with pytest.raises(Exception, match="not an object"):
        last_verification(store, served.info.log_id)


def test_a_record_is_taken_in_when_asked_for_at_or_after_its_newest_event(hub: Hub) -> None:
    store, log_id = hub.store, hub.logs()[0].info.log_id
    events = record_events(random.Random(9), 0, 10)
    ingest(hub, events)
    cache = StepCache()
    key = (log_id, "invoice", "INV-R")
    past = BASE_MS + 10_000  # events occur at BASE_MS + 0..99 s: most come later
    fresh = entity_state(store, log_id, "invoice", "INV-R", past, max_events=100)
    assert (
        entity_state(store, log_id, "invoice", "INV-R", past, max_events=100, cache=cache) == fresh
    )
    assert key not in cache._records  # only part of the record was needed
    now = time.time_ns() // 1_000_000
    entity_state(store, log_id, "invoice", "INV-R", now, max_events=100, cache=cache)
    assert key in cache._records
    again = entity_state(store, log_id, "invoice", "INV-R", past, max_events=100, cache=cache)
    assert again.to_dict() == fresh.to_dict()
    missing = entity_state(store, log_id, "invoice", "nothing", now, max_events=100, cache=cache)
    assert missing.events == 0 and missing.state.exists is None
