"""The client against a real ``indelible run``: delivery with receipts, refusals kept aside
without blocking the rest, idempotent replays, local validation, the async client, and
Retry-After honoured."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indelible.errors import InvalidEvent
from indelible.sdk import AsyncClient, Client, context, current_context, job
from indelible.sdk.outbox import Row
from indelible.sdk.sender import backoff_delay, judge
from tests.sdk.live import ROOT, LiveServer

ACTOR = {"id": "billing-app", "type": "service"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("client") / "data")
    try:
        yield live
    finally:
        live.stop()


def _client(server: LiveServer, tmp_path: Path, **kw: Any) -> Client:
    kw.setdefault("default_actor", ACTOR)
    outbox = kw.pop("outbox_path", tmp_path / "outbox.sqlite3")
    return Client(server.url, server.writer, outbox, poll=0.2, **kw)


def _entry(server: LiveServer, event_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{server.url}/v1/events/{event_id}",
        headers={"Authorization": f"Bearer {server.admin}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_record_delivers_with_context_and_receipts(server: LiveServer, tmp_path: Path) -> None:
    receipts: list[dict[str, Any]] = []
    client = _client(server, tmp_path, on_receipts=receipts.extend)
    try:
        outer = context(actor={"id": "u-7", "type": "user"}, request_id="req-1", ip="203.0.113.7")
        with outer, context(reason="customer asked", user_agent="pytest"):
            assert current_context().request_id == "req-1"
            event_id = client.record(
                "invoice.voided",
                target={"type": "invoice", "id": "INV-1"},
                action="update",
                changes=[{"field": "status", "before": "open", "after": "void"}],
            )
        with job("nightly-invoicer", run_id="2026-12-05"):
            job_id = client.record("invoice.issued", target={"type": "invoice", "id": "INV-2"})
        assert client.flush(30)
    finally:
        client.close()
    assert [r["event_id"] for r in receipts] == [event_id, job_id]
    assert all(isinstance(r["seq"], int) and len(r["leaf_hash"]) == 64 for r in receipts)
    event = _entry(server, event_id)["event"]
    assert event["actor"] == {"id": "u-7", "type": "user"}
    assert event["reason"] == "customer asked"
    assert event["context"] == {
        "ip": "203.0.113.7",
        "request_id": "req-1",
        "user_agent": "pytest",
        "source": "app",
    }
    assert event["changes"] == [{"field": "status", "before": "open", "after": "void"}]
    assert uuid.UUID(event_id).version == 7
    ran = _entry(server, job_id)["event"]
    assert ran["actor"] == {"id": "nightly-invoicer", "type": "job"}
    assert ran["context"] == {"request_id": "2026-12-05", "source": "job"}
    assert ran["action"] == "issued"


def test_a_refused_event_is_kept_aside_and_the_rest_delivered(
    server: LiveServer, tmp_path: Path
) -> None:
    client = _client(server, tmp_path)
    try:
        # an hour ahead: valid here, refused by the service's clock-skew rule (422)
        ahead = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        events = [client.build_event("invoice.viewed", data={"n": n}) for n in range(3)]
        bad = client.build_event("invoice.viewed", occurred_at=ahead)
        client.record_built([events[0], bad, events[1], events[2]])
        assert client.flush(30)
        (rejected,) = client.rejected()
        stats = client.stats()
    finally:
        client.close()
    assert stats == {
        "pending": 0,
        "spilled": 0,
        "sent": 3,
        "retries": 0,
        "rejected": 1,
        "last_error": None,
    }
    assert rejected.event_id == bad["event_id"]
    assert (rejected.status, rejected.code) == (422, "invalid_event")
    assert "/occurred_at" in rejected.reason
    assert rejected.event == bad
    for event in events:
        assert _entry(server, event["event_id"])["event"]["data"] == event["data"]


def test_event_id_conflict_is_rejected_and_a_replay_is_one_entry(
    server: LiveServer, tmp_path: Path
) -> None:
    client = _client(server, tmp_path)
    try:
        original = client.build_event("invoice.paid", data={"amount": 100})
        posted = httpx.post(
            f"{server.url}/v1/events",
            json=original,
            headers={"Authorization": f"Bearer {server.writer}"},
        )
        assert posted.status_code == 201
        seq = posted.json()["receipts"][0]["seq"]
        changed = {**original, "data": {"amount": 999}}
        other = client.build_event("invoice.paid", data={"amount": 5})
        # in one request: the same event again (an idempotent replay), the same id with other
        # content (a conflict), and an unrelated event that must not suffer for it
        client.record_built([original, changed, other])
        assert client.flush(30)
        (rejected,) = client.rejected()
    finally:
        client.close()
    assert (rejected.status, rejected.code) == (409, "event_id_conflict")
    assert rejected.event["data"] == {"amount": 999}
    entry = _entry(server, original["event_id"])
    assert entry["seq"] == seq and entry["event"]["data"] == {"amount": 100}
    counts = server.counts("invoice.paid")
    assert counts[original["event_id"]] == 1 and counts[other["event_id"]] == 1


def test_judge_sends_a_repeated_conflicting_id_alone() -> None:
    rows = [Row(0, "a", b"{}"), Row(1, "b", b"{}"), Row(2, "a", b"{}")]
    body = b'{"error": {"code": "event_id_conflict", "message": "m", "details": {"event_id": "a"}}}'
    verdict = judge(rows, 409, body, {})
    assert verdict.resend == [[rows[0]], [rows[2]], [rows[1]]] and not verdict.refused
    alone = judge(rows[2:], 409, body, {})
    assert [r for r, *_ in alone.refused] == rows[2:]


def test_invalid_events_fail_in_the_caller_and_record_nothing(tmp_path: Path) -> None:
    client = Client(None, outbox=tmp_path / "o.sqlite3", default_actor=ACTOR)
    try:
        with pytest.raises(InvalidEvent) as caught:
            client.record("Not A Type", action="update", outcome="maybe")
        fields = {error.field for error in caught.value.errors}
        assert fields == {"/event_type", "/outcome"}
        good = client.build_event("invoice.updated")
        with pytest.raises(InvalidEvent) as caught:
            client.record_built([good, {**good, "event_id": "nope"}])
        assert caught.value.errors[0].index == 1
        with pytest.raises(TypeError):
            client.record("invoice.updated", colour="red")
        assert client.pending() == 0
    finally:
        client.close()
    anonymous = Client(None, outbox=tmp_path / "o.sqlite3")
    try:
        with pytest.raises(InvalidEvent) as caught:
            anonymous.record("invoice.updated")  # no actor anywhere
        assert caught.value.errors[0].field == "/actor"
    finally:
        anonymous.close()


def test_async_client_records_and_flushes(server: LiveServer, tmp_path: Path) -> None:
    async def main() -> list[str]:
        async with AsyncClient(
            server.url, server.writer, tmp_path / "a.sqlite3", default_actor=ACTOR, poll=0.2
        ) as client:

            async def one(n: int) -> str:
                with context(request_id=f"task-{n}"):
                    await asyncio.sleep(0)
                    return await client.record("invoice.listed", data={"n": n})

            ids = await asyncio.gather(*(one(n) for n in range(20)))
            assert await client.flush(30)
            return list(ids)

    ids = asyncio.run(main())
    for n, event_id in enumerate(ids):
        assert _entry(server, event_id)["event"]["context"]["request_id"] == f"task-{n}"


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    """429 with Retry-After from the real service: wrong keys block the address for a few
    seconds; the client waits that long instead of hammering, then delivers."""
    live = LiveServer(tmp_path / "data")
    try:
        live.stop()
        live.env.update(INDELIBLE_AUTH_FAIL_LIMIT="2", INDELIBLE_AUTH_FAIL_WINDOW="3")
        live.start()
        for _ in range(2):
            bad = {"Authorization": "Bearer idl_" + "0" * 16 + "_x"}
            assert httpx.get(f"{live.url}/v1/checkpoint", headers=bad).status_code == 401
        blocked = httpx.post(f"{live.url}/v1/events", json={}, headers=bad)
        assert blocked.status_code == 429 and float(blocked.headers["retry-after"]) >= 1
        started = time.monotonic()
        client = _client(live, tmp_path, base_backoff=0.01, max_backoff=0.05)
        try:
            event_id = client.record("invoice.updated")
            assert client.flush(30)
            assert time.monotonic() - started >= 1.0
            assert client._sender is not None and 1 <= client._sender.retries <= 4
        finally:
            client.close()
        assert live.counts("invoice.updated")[event_id] == 1
    finally:
        live.stop()


# -- the sender's decisions (pure) ----------------------------------------------------------


def _rows(n: int) -> list[Row]:
    return [Row(i, f"id-{i}", b"{}") for i in range(n)]


def test_judge_splits_a_refused_request_down_to_the_event() -> None:
    rows = _rows(5)
    error = b'{"error": {"code": "limit_exceeded", "message": "too big", "details": {}}}'
    halves = judge(rows, 413, error, {})
    assert halves.retry is None and halves.resend == [rows[:2], rows[2:]]
    single = judge(rows[:1], 413, error, {})
    assert [r for r, *_ in single.refused] == rows[:1] and not single.resend


def test_judge_retries_what_is_not_the_events_fault() -> None:
    for status, code in ((503, "overloaded"), (500, "internal_error"), (409, "duplicate_event_id")):
        body = f'{{"error": {{"code": "{code}", "message": "m", "details": {{}}}}}}'.encode()
        verdict = judge(_rows(2), status, body, {"retry-after": "7"})
        assert verdict.retry and verdict.retry_after == 7 and not verdict.refused
    verdict = judge(_rows(2), 401, b"not json", {})
    assert verdict.retry and verdict.misconfigured
    mismatch = judge(_rows(1), 201, b'{"receipts": [{"event_id": "other"}]}', {})
    assert mismatch.retry and not mismatch.acked


def test_backoff_grows_jittered_capped_and_respects_retry_after() -> None:
    def top(a: float, b: float) -> float:
        return b

    def bottom(a: float, b: float) -> float:
        return a

    assert [backoff_delay(n, None, base=0.5, cap=4, rng=top) for n in (1, 2, 3, 4, 9)] == [
        0.5,
        1,
        2,
        4,
        4,
    ]
    assert backoff_delay(3, None, base=0.5, cap=4, rng=bottom) == 1
    assert backoff_delay(1, 10, base=0.5, cap=4, rng=top) == 10


def test_the_recording_example_of_docs_sdk_runs(server: LiveServer, tmp_path: Path) -> None:
    text = (ROOT / "docs" / "sdk.md").read_text(encoding="utf-8")
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "client.record(" in example and "client.close()" in example
    example = (
        example.replace("http://127.0.0.1:8700", server.url)
        .replace('"idl_…"', repr(server.writer))
        .replace("./audit-outbox.sqlite3", str(tmp_path / "outbox.sqlite3"))
    )
    scope: dict[str, Any] = {}
    exec(compile(example, "docs/sdk.md", "exec"), scope)
    event = _entry(server, scope["event_id"])["event"]
    assert event["target"] == {"type": "invoice", "id": "INV-1042"}
    assert event["actor"] == {"id": "u-17", "type": "user"}


def test_spilled_events_are_drained_back_and_delivered_once(
    server: LiveServer, tmp_path: Path
) -> None:
    outbox = tmp_path / "spill.sqlite3"
    offline = Client(None, outbox=outbox, default_actor=ACTOR, max_events=5, when_full="spill")
    ids = [offline.record("invoice.spilled", data={"n": n}) for n in range(23)]
    assert (offline.pending(), offline.outbox.spilled()) == (23, 18)
    offline.close()
    client = _client(server, tmp_path, outbox_path=outbox)
    try:
        assert client.flush(30)
        assert not (tmp_path / "spill.sqlite3.spill").exists()
    finally:
        client.close()
    counts = server.counts("invoice.spilled")
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}
