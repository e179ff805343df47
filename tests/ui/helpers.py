"""The web UI in process: a runtime on a fresh log, a browser-like client with cookies."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from indelible.server import Runtime, create_app
from indelible.storage.base import EntryQuery
from indelible.storage.sqlite import SQLiteStore
from tests.server.test_api import new_runtime

BASE = "http://indelible.test"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Ui:
    app: Any
    runtime: Runtime
    store: SQLiteStore
    log_id: int
    admin: str  # an admin key's token

    def browser(self, base: str = BASE) -> httpx.AsyncClient:
        """A client with its own cookie jar, sending what a browser sends."""
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        return httpx.AsyncClient(
            transport=transport, base_url=base, headers={"Accept": "text/html"}
        )

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        return httpx.AsyncClient(
            transport=transport,
            base_url=BASE,
            headers={"Authorization": f"Bearer {token or self.admin}"},
        )

    async def key(self, role: str, name: str | None = None) -> str:
        async with self.api() as api:
            made = await api.post("/v1/keys", json={"name": name or f"ui {role}", "role": role})
            assert made.status_code == 201, made.text
            return str(made.json()["token"])

    async def post_events(self, events: list[dict[str, Any]], token: str | None = None) -> None:
        async with self.api(token) as api:
            posted = await api.post("/v1/events", json=events)
            assert posted.status_code == 201, posted.text

    def audit(self, event_type: str = "audit.read") -> list[dict[str, Any]]:
        """Every ``event_type`` event of the log, oldest first, decoded."""
        from indelible.service.query import entry_view

        rows = self.store.query_entries(
            self.log_id, EntryQuery(event_type=event_type, limit=100_000)
        )
        return [entry_view(row)["event"] for row in rows]

    def wait_published(self, timeout: float = 5.0) -> None:
        """Until the final checkpoint covers the whole log."""
        served = self.runtime.hub.get(self.log_id)
        deadline = time.monotonic() + timeout
        while True:
            final = served.final_checkpoint()
            if final is not None and final.row.size >= self.store.tree_size(self.log_id):
                return
            assert time.monotonic() < deadline, "no checkpoint covered the log in time"
            time.sleep(0.02)


@asynccontextmanager
async def running_ui(tmp_path: Path, **options: Any) -> AsyncIterator[Ui]:
    store, runtime, token = new_runtime(tmp_path, **options)
    app = create_app(runtime)
    try:
        async with app.router.lifespan_context(app):
            yield Ui(app, runtime, store, store.get_log("acme").log_id, token)
    finally:
        store.close()


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


async def login(
    client: httpx.AsyncClient, token: str, next_page: str = "/search"
) -> httpx.Response:
    form = await client.get("/login")
    assert form.status_code == 200, form.text
    return await client.post(
        "/login", data={"key": token, "csrf": csrf_of(form.text), "next": next_page}
    )


@asynccontextmanager
async def signed_in(ui: Ui, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser with a session of ``token``."""
    async with ui.browser() as client:
        answered = await login(client, token)
        assert answered.status_code == 303, answered.text
        yield client
