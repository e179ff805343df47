"""Shared by the SQLAlchemy and Django capture tests: one live server per module, a client on
it, and the events a test recorded (found by the test's own request_id)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from indelible.sdk import Client
from tests.sdk.live import LiveServer

SERVICE = {"id": "billing-app", "type": "service"}
USER = {"id": "u-17", "type": "user"}


def new_client(live: LiveServer, directory: Path) -> Client:
    return Client(
        live.url,
        live.writer,
        outbox=directory / f"outbox-{uuid.uuid4().hex[:8]}.sqlite3",
        default_actor=SERVICE,
        poll=0.2,
    )


def request_id() -> str:
    return f"req-{uuid.uuid4().hex[:12]}"


def logged(
    live: LiveServer, client: Client, request: str, drain: Callable[[], object], count: int
) -> list[dict[str, Any]]:
    """The events with ``context.request_id == request`` in the log, in seq order, once
    ``count`` of them are there (the relay drained, the client flushed)."""
    drain()
    assert client.flush(timeout=30), "the client did not deliver its outbox"
    headers = {"Authorization": f"Bearer {live.admin}"}
    deadline = time.monotonic() + 10
    while True:
        page = httpx.get(
            f"{live.url}/v1/events",
            params={"request_id": request, "limit": 1000},
            headers=headers,
            timeout=10,
        )
        assert page.status_code == 200, page.text
        events = [item["event"] for item in page.json()["items"]]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def state(live: LiveServer, target_type: str, target: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{live.url}/v1/entities/{target_type}/{target}/state",
        headers={"Authorization": f"Bearer {live.admin}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body
