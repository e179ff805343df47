"""The HTTP API in process (httpx ASGI transport, lifespan run) against a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from indelible.core.checkpoint import open_checkpoint
from indelible.core.entry import decode
from indelible.core.note import parse_vkey
from indelible.errors import InconsistentTree
from indelible.server import Runtime, create_app
from indelible.server.errors import STATUS
from indelible.server.fastpath import IngestFastPath
from indelible.service.logs import init_log
from indelible.storage.sqlite import SQLiteStore
from tests.factories import billing_event, timestamp

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}
MiB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def now() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Service:
    client: httpx.AsyncClient
    runtime: Runtime
    store: SQLiteStore
    log_id: int
    token: str  # an admin key of the tenant, sent on every request of ``client``

    @property
    def size(self) -> int:
        return self.store.tree_size(self.log_id)

    async def post(self, body: Any, headers: dict[str, str] = JSON) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.client.post("/v1/events", content=content, headers=headers)


def new_runtime(
    tmp_path: Path, *, with_key: bool = True, **options: Any
) -> tuple[SQLiteStore, Runtime, str]:
    """A store with the tenant "acme" and a runtime over it (not started), with an admin key
    made straight in the store (no audit event, so the log starts empty)."""
    store = SQLiteStore(tmp_path / "log.db")
    init_log(
        store, tmp_path / "keys", "acme", "example.com/acme", clock_ms=now, random_bytes=os.urandom
    )
    options.setdefault("checkpoint_interval", 0.05)
    runtime = Runtime(store, tmp_path / "keys", close_store=False, **options)
    token = ""
    if with_key:
        log_id = store.get_log("acme").log_id
        _, token = runtime.keys.create(log_id, "admin", "test admin", None)
    return store, runtime, token


@asynccontextmanager
async def running(tmp_path: Path, **options: Any) -> AsyncIterator[Service]:
    """A runtime on a fresh log, served in process with its lifespan (start, drain, close)."""
    store, runtime, token = new_runtime(tmp_path, **options)
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport,
                base_url="http://indelible.test",
                headers={"Authorization": f"Bearer {token}"},
            ) as client,
        ):
            yield Service(client, runtime, store, store.get_log("acme").log_id, token)
    finally:
        store.close()


@pytest.fixture
async def service(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Service]:
    async with running(tmp_path) as started:
        yield started


def assert_error_shape(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert sorted(body["error"]) == ["code", "details", "message"]
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["details"], dict)
    if code is not None:
        assert body["error"]["code"] == code, body


# ---- ingest


async def test_one_event_an_array_and_ndjson_get_receipts_naming_the_stored_entries(
    service: Service,
) -> None:
    ndjson = "\n".join(json.dumps(billing_event(n)) for n in (3, 4)).encode()
    answers = [
        await service.post(billing_event(0)),
        await service.post([billing_event(1), billing_event(2)]),
        await service.post(ndjson + b"\n", NDJSON),
    ]
    assert [a.status_code for a in answers] == [201, 201, 201]
    receipts = [r for a in answers for r in a.json()["receipts"]]
    assert [r["seq"] for r in receipts] == [0, 1, 2, 3, 4]
    assert service.size == 5
    log_id = service.log_id
    for n, receipt in enumerate(receipts):
        row = service.store.get_entry(log_id, receipt["seq"])
        assert receipt["event_id"] == row.index.event_id == billing_event(n)["event_id"]
        assert receipt["leaf_hash"] == row.leaf_hash.hex()


async def test_a_replay_returns_the_same_receipts_and_appends_nothing(service: Service) -> None:
    batch = [billing_event(0), billing_event(1)]
    first = await service.post(batch)
    again = await service.post(list(reversed(batch)))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["receipts"] == list(reversed(first.json()["receipts"]))
    assert service.size == 2


async def test_a_known_event_id_with_other_content_is_a_409_conflict(service: Service) -> None:
    await service.post(billing_event(0))
    response = await service.post([billing_event(1), billing_event(0, reason="rewritten")])
    assert_error_shape(response, 409, "event_id_conflict")
    details = response.json()["error"]["details"]
    assert details == {"event_id": billing_event(0)["event_id"], "seq": 0}
    assert service.size == 1, "a conflicting request appends none of its events"


async def test_crlf_and_ansi_escapes_are_accepted_and_stored_verbatim(service: Service) -> None:
    reason = "line one\r\nline two \x1b[31mred\x1b[0m \x1b]0;title\x07"
    event = billing_event(0, reason=reason, data={"note": "a\rb\x1b[2J"})
    response = await service.post(event)
    assert response.status_code == 201
    row = service.store.get_entry(service.log_id, 0)
    stored = decode(row.leaf, row.personal).event
    assert stored["reason"] == reason
    assert stored["data"] == {"note": "a\rb\x1b[2J"}


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def _future(minutes: int) -> str:
    return timestamp(now() + minutes * 60_000)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _type(value: str) -> dict[str, str]:
    return {"Content-Type": value}


ONE = _json(billing_event(1))
MEDIA = "unsupported_media_type"
BAD_INPUT = [  # id: (body, headers, status, code)
    pytest.param(b'{"event_id": ', JSON, 400, "malformed_json", id="malformed"),
    pytest.param(b"", JSON, 400, "malformed_json", id="empty body"),
    pytest.param(b"[]", JSON, 400, "invalid_input", id="empty array"),
    pytest.param(b'{"a": 1}\n{"b": 2}', JSON, 400, "malformed_json", id="ndjson sent as json"),
    pytest.param(ONE + b"\n{", NDJSON, 400, "malformed_json", id="bad ndjson line"),
    pytest.param(b'{"event_id": "a", "event_id": "b"}', JSON, 400, "malformed_json", id="dup key"),
    pytest.param(
        _json(billing_event(1, data={"x": float("nan")})), JSON, 400, "malformed_json", id="NaN"
    ),
    pytest.param(ONE, _type("text/plain"), 415, MEDIA, id="text/plain"),
    pytest.param(b"a=1", _type("application/x-www-form-urlencoded"), 415, MEDIA, id="form"),
    pytest.param(ONE, {}, 415, MEDIA, id="no content type"),
    pytest.param(ONE, _type("application/json; charset=latin-1"), 415, MEDIA, id="latin-1"),
    pytest.param(
        _json([billing_event(n) for n in range(1, 1002)]),
        JSON,
        413,
        "limit_exceeded",
        id="1001 events",
    ),
    pytest.param(b"[" * 2000 + b"]" * 2000, JSON, 413, "limit_exceeded", id="2000 levels deep"),
    pytest.param(
        _json(billing_event(1, data=_nested(40))), JSON, 422, "invalid_event", id="40 levels deep"
    ),
    pytest.param(_json(billing_event(1, reason="a\x00b")), JSON, 422, "invalid_event", id="NUL"),
    pytest.param(
        _json(billing_event(1, occurred_at=_future(10))),
        JSON,
        422,
        "invalid_event",
        id="10 minutes ahead",
    ),
    pytest.param(
        _json([billing_event(1), billing_event(2, outcome="maybe")]),
        JSON,
        422,
        "invalid_event",
        id="one bad item of two",
    ),
    pytest.param(
        _json(billing_event(0, reason="changed")),
        JSON,
        409,
        "event_id_conflict",
        id="replayed id, other content",
    ),
]


@pytest.mark.parametrize(("body", "headers", "status", "code"), BAD_INPUT)
async def test_bad_input_gets_its_4xx_in_the_error_shape_and_changes_nothing(
    service: Service, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    assert (await service.post(billing_event(0))).status_code == 201
    response = await service.post(body, headers)
    assert_error_shape(response, status, code)
    assert service.size == 1


async def test_invalid_items_are_all_listed_by_index_and_field(service: Service) -> None:
    batch = [billing_event(0), billing_event(1, outcome="maybe"), billing_event(2, event_id="x")]
    response = await service.post(batch)
    assert_error_shape(response, 422, "invalid_event")
    errors = response.json()["error"]["details"]["errors"]
    assert {(e["index"], e["field"]) for e in errors} == {(1, "/outcome"), (2, "/event_id")}
    assert service.size == 0


async def test_an_oversized_body_with_content_length_is_refused_unread(service: Service) -> None:
    body = b" " * (8 * MiB + 1)
    response = await service.post(body)
    assert_error_shape(response, 413, "limit_exceeded")
    details = response.json()["error"]["details"]
    assert details == {"limit": "max_body_bytes", "maximum": 8 * MiB, "actual": 8 * MiB + 1}
    assert service.size == 0


async def test_an_oversized_chunked_body_is_refused_once_it_passes_the_limit(
    service: Service,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(32):
            sent += 1
            yield b" " * MiB

    response = await service.client.post("/v1/events", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error_shape(response, 413, "limit_exceeded")
    assert sent <= 10, "the server read far past the limit"
    assert service.size == 0


# ---- every error answers in the one shape


async def _unknown_route(s: Service) -> httpx.Response:
    return await s.client.get("/v2/nothing")


async def _wrong_method(s: Service) -> httpx.Response:
    return await s.client.delete("/v1/events")


async def _malformed(s: Service) -> httpx.Response:
    return await s.post(b"{")


async def _too_large(s: Service) -> httpx.Response:
    return await s.post(b" " * (8 * MiB + 1))


async def _wrong_type(s: Service) -> httpx.Response:
    return await s.post(b"{}", {"Content-Type": "text/csv"})


async def _invalid(s: Service) -> httpx.Response:
    return await s.post({"event_id": "nope"})


async def _conflict(s: Service) -> httpx.Response:
    await s.post(billing_event(0))
    return await s.post(billing_event(0, reason="other"))


async def _no_checkpoint(s: Service) -> httpx.Response:
    return await s.client.get("/v1/checkpoint")


ERRORS: dict[str, tuple[Callable[[Service], Awaitable[httpx.Response]], int]] = {
    "404 unknown route": (_unknown_route, 404),
    "404 no checkpoint": (_no_checkpoint, 404),
    "405": (_wrong_method, 405),
    "400": (_malformed, 400),
    "413": (_too_large, 413),
    "415": (_wrong_type, 415),
    "422": (_invalid, 422),
    "409": (_conflict, 409),
}


@pytest.mark.parametrize("case", list(ERRORS))
async def test_every_error_response_has_exactly_the_error_shape(
    service: Service, case: str
) -> None:
    request, status = ERRORS[case]
    assert_error_shape(await request(service), status)


async def test_405_names_the_allowed_methods(service: Service) -> None:
    response = await service.client.put("/v1/checkpoint")
    assert_error_shape(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"
    both = await service.client.put("/v1/keys")
    assert both.headers["allow"] == "GET, POST"


async def test_an_unexpected_failure_is_a_500_in_the_error_shape_without_internals(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(log_id: int) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service.runtime, "log_info", explode)
    response = await service.client.get("/v1/vkey")
    assert_error_shape(response, 500, "internal_error")
    assert "secret" not in response.text


async def test_metrics_count_requests_by_route_template_and_bound_their_labels(
    service: Service,
) -> None:
    await service.post(billing_event(0))
    await service.client.request("FOOBAR", "/v1/events")
    await service.client.get("/v1/events/some-id")
    text = (await service.client.get("/metrics")).text
    assert (
        'indelible_http_requests_total{method="POST",route="/v1/events",status="201"} 1.0' in text
    )
    assert 'method="other"' in text and "FOOBAR" not in text
    assert 'route="/v1/events/{event_id}"' in text and "some-id" not in text
    assert "indelible_events_ingested_total 1.0" in text
    assert "indelible_tenants 1.0" in text


def test_the_status_table_maps_every_class_once() -> None:
    classes = [kind for kind, _ in STATUS]
    assert len(classes) == len(set(classes))
    for index, kind in enumerate(classes):  # a subclass must come before its base
        assert not any(issubclass(later, kind) for later in classes[index + 1 :]), kind


# ---- overload, readiness, shutdown


async def test_a_full_ingest_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    async with running(tmp_path, max_pending=2) as service:
        service.store._write_lock.acquire()  # the writer is stuck: requests pile up
        try:
            first = asyncio.create_task(service.post(billing_event(0)))
            await asyncio.sleep(0.2)
            second = asyncio.create_task(service.post([billing_event(1), billing_event(2)]))
            await asyncio.sleep(0.2)
            refused = await service.post(billing_event(3))
        finally:
            service.store._write_lock.release()
        assert_error_shape(refused, 503, "overloaded")
        assert refused.headers["retry-after"] == "1"
        assert [(await t).status_code for t in (first, second)] == [201, 201]
        assert service.size == 3


async def test_readiness_follows_the_sequencer_and_the_publisher(service: Service) -> None:
    assert (await service.client.get("/healthz")).json() == {"status": "ok"}
    assert (await service.client.get("/readyz")).status_code == 200
    failure = InconsistentTree("tree of size 3 does not extend checkpoint 5", seq=3)
    service.runtime.hub.logs()[
        0
    ].publisher.last_error = failure  # what a failed signing leaves behind
    response = await service.client.get("/readyz")
    assert response.status_code == 503
    assert "inconsistent_tree" in response.json()["reason"]


async def test_a_runtime_that_is_not_started_is_alive_but_not_ready(
    tmp_path: Path, anyio_backend: str
) -> None:
    store, runtime, token = new_runtime(tmp_path)
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)  # no lifespan: nothing started
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=auth) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "not started" in ready.json()["reason"]
        refused = await client.post("/v1/events", json=billing_event(0))
        assert_error_shape(refused, 503, "store_error")
    store.close()


async def test_closing_drains_pending_requests_and_signs_a_final_checkpoint(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, checkpoint_interval=60) as service:
        service.store._write_lock.acquire()
        pending = asyncio.create_task(service.post([billing_event(0), billing_event(1)]))
        await asyncio.sleep(0.2)
        threading.Timer(0.3, service.store._write_lock.release).start()
        await asyncio.to_thread(service.runtime.close)  # what the lifespan does at shutdown
        response = await pending
        assert response.status_code == 201
        assert [r["seq"] for r in response.json()["receipts"]] == [0, 1]
        latest = service.store.latest_checkpoint(service.log_id)
        assert latest is not None and latest.size == 2
        refused = await service.post(billing_event(2))
        assert_error_shape(refused, 503, "store_error")


# ---- checkpoint and vkey


async def test_the_checkpoint_is_a_signed_note_covering_the_events(service: Service) -> None:
    await service.post([billing_event(n) for n in range(7)])
    vkey = await service.client.get("/v1/vkey")
    assert vkey.headers["content-type"] == "text/plain; charset=utf-8"
    verifier = parse_vkey(vkey.text.strip())
    deadline = time.monotonic() + 3
    while True:
        response = await service.client.get("/v1/checkpoint")
        if response.status_code == 200:
            checkpoint, _ = open_checkpoint(response.text, verifier, "example.com/acme")
            if checkpoint.size == 7:
                break
        assert time.monotonic() < deadline, "no checkpoint covered the events within 3 s"
        await asyncio.sleep(0.05)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"


# ---- the ingest fast path


async def test_the_fast_path_and_the_framework_route_answer_alike(tmp_path: Path) -> None:
    cases: list[tuple[bytes, dict[str, str]]] = [
        (ONE, JSON),
        (ONE, JSON),  # a replay: the same receipt
        (b'{"event_id": ', JSON),
        (ONE, _type("text/plain")),
        (_json(billing_event(1, reason="other")), JSON),  # a conflict
        (_json(billing_event(2, event_type="audit.read")), JSON),
        (ONE, {**JSON, "Authorization": "Bearer nope"}),
        (ONE, {**JSON, "Authorization": ""}),
    ]
    answers: list[list[tuple[int, str]]] = []
    for fast in (True, False):
        store, runtime, token = new_runtime(tmp_path / str(fast))
        app = create_app(runtime)
        if not fast:
            app.user_middleware = [m for m in app.user_middleware if m.cls is not IngestFastPath]
        transport = httpx.ASGITransport(app=app)
        auth = {"Authorization": f"Bearer {token}"}
        seen = []
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            for body, headers in cases:
                response = await client.post(
                    "/v1/events", content=body, headers={**auth, **headers}
                )
                # leaf hashes differ (they cover received_at); all else must not
                text = re.sub(r'"leaf_hash":"[0-9a-f]{64}"', '"leaf_hash":"…"', response.text)
                seen.append((response.status_code, text))
            metrics = (await client.get("/metrics")).text
        assert 'route="/v1/events",status="201"} 2.0' in metrics
        answers.append(seen)
        store.close()
    assert [status for status, _ in answers[0]] == [201, 201, 400, 415, 409, 422, 401, 401]
    assert answers[0] == answers[1]
