"""The ASGI middleware in real Starlette and FastAPI applications (in process, over httpx's
ASGI transport): each request's context reaches the events its handler builds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from indelible.sdk import Client, current_context
from indelible.sdk.asgi import AuditContextMiddleware


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    made = Client(None, outbox=tmp_path / "o.sqlite3")
    try:
        yield made
    finally:
        made.close()


def _actor(scope: Mapping[str, Any]) -> dict[str, str] | None:
    for name, value in scope["headers"]:
        if name == b"x-user":
            return {"id": value.decode(), "type": "user"}
    return None


async def _async_actor(scope: Mapping[str, Any]) -> dict[str, str] | None:
    await asyncio.sleep(0)
    return _actor(scope)


def _get(app: Any, path: str, headers: dict[str, str]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            answer = await http.get(path, headers=headers)
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

    return asyncio.run(go())


def test_starlette_requests_carry_their_context(client: Client) -> None:
    async def voided(request: Request) -> JSONResponse:
        event_id = client.record("invoice.voided", target={"type": "invoice", "id": "INV-1"})
        event = client.build_event("invoice.voided", event_id=event_id)
        return JSONResponse(event)

    app = Starlette(routes=[Route("/void", voided)])
    app.add_middleware(AuditContextMiddleware, actor=_actor)
    event = _get(app, "/void", {"X-Request-Id": "req-42", "X-User": "u-9", "User-Agent": "t/1"})
    assert event["actor"] == {"id": "u-9", "type": "user"}
    assert event["context"] == {
        "ip": "198.51.100.4",
        "user_agent": "t/1",
        "request_id": "req-42",
        "source": "app",
    }
    assert client.pending() == 1
    assert current_context().request_id is None  # nothing leaks out of the request


def test_fastapi_sync_handlers_and_async_actor_and_generated_request_ids(client: Client) -> None:
    app = FastAPI()
    app.add_middleware(AuditContextMiddleware, actor=_async_actor, source="web")

    @app.get("/sync")
    def sync_handler() -> dict[str, Any]:  # runs in a worker thread: the context follows
        ctx = current_context()
        return {"actor": ctx.event_actor(), "context": ctx.event_context()}

    first = _get(app, "/sync", {"X-User": "u-1"})
    second = _get(app, "/sync", {})
    assert first["actor"] == {"id": "u-1", "type": "user"}
    assert second["actor"] is None
    assert first["context"]["source"] == "web"
    ids = {first["context"]["request_id"], second["context"]["request_id"]}
    assert len(ids) == 2 and all(len(i) == 36 for i in ids)


def test_hostile_headers_cannot_make_record_fail(client: Client) -> None:
    async def handler(request: Request) -> JSONResponse:
        client.record("invoice.viewed", actor={"id": "u", "type": "user"})
        return JSONResponse(current_context().event_context())

    app = Starlette(routes=[Route("/", handler)])
    app.add_middleware(AuditContextMiddleware)
    found = _get(app, "/", {"X-Request-Id": "r" * 5000, "User-Agent": "u" * 5000})
    assert len(found["request_id"]) == 200 and len(found["user_agent"]) == 512

    async def no_client_address() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app, client=("testclient", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            return dict((await http.get("/")).json())

    assert "ip" not in asyncio.run(no_client_address())  # not an address: left out
    assert client.pending() == 2
