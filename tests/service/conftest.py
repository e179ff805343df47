"""Fixtures of the pg-capture tests: an application database with its roles, a live Indelible
log (``indelible run`` in a subprocess, tests/server/test_live.py) and a relay in a thread."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from indelible.service.pgcapture import Relay, RelayOptions, status
from tests import pg
from tests.server.test_live import Server, bearer


@dataclass
class Log:
    """A live Indelible server with an admin key (to read) and a writer key (to relay)."""

    server: Server
    admin: str
    writer: str

    @property
    def base(self) -> str:
        return self.server.base

    def events(self, **filters: str) -> list[dict[str, Any]]:
        """Every event matching ``filters``, in log order, read page by page over HTTP."""
        found: list[dict[str, Any]] = []
        params: dict[str, str] = {**filters, "limit": "1000"}
        with httpx.Client(base_url=self.base, timeout=30, headers=bearer(self.admin)) as client:
            while True:
                page = client.get("/v1/events", params=params)
                assert page.status_code == 200, page.text
                body = page.json()
                found += [item["event"] for item in body["items"]]
                if body["next_cursor"] is None:
                    return found
                params["cursor"] = body["next_cursor"]


def start_log(data: Path) -> Log:
    server = Server(data)
    admin = server.admin_key()
    assert admin is not None
    made = httpx.post(
        f"{server.base}/v1/keys",
        json={"name": "pg-capture relay", "role": "writer"},
        headers=bearer(admin),
        timeout=10,
    )
    assert made.status_code == 201, made.text
    return Log(server, admin, made.json()["token"])


@pytest.fixture(scope="module")
def capture_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    log = start_log(tmp_path_factory.mktemp("capture-log") / "data")
    try:
        yield log
    finally:
        log.server.stop()


@dataclass
class App:
    """The application's database: the owner installs, the service role is the application,
    a role of its own relays."""

    db: pg.Database
    relay_role: str

    @property
    def owner_url(self) -> str:
        return self.db.owner_url

    @property
    def relay_url(self) -> str:
        return self.db.server.url(user=self.relay_role, dbname=self.db.name)

    @property
    def app_role(self) -> str:
        return self.db.service

    def owner(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.db.owner_url, autocommit=True)

    def app(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A connection as the application role (not the table's owner)."""
        return psycopg.connect(self.db.service_url, autocommit=True)

    def status(self) -> dict[str, Any]:
        with psycopg.connect(self.db.owner_url) as conn:
            return status(conn)

    def create(self, ddl: str, table: str) -> None:
        """Create a table as the owner and let the application role write it."""
        with self.owner() as conn:
            conn.execute(ddl)
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {} TO {}").format(
                    sql.Identifier(table), sql.Identifier(self.app_role)
                )
            )


@pytest.fixture
def app_db(pg_database: pg.Database) -> Iterator[App]:
    role = f"indelible_relay_{secrets.token_hex(4)}"
    with pg_database.server.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield App(pg_database, role)
    finally:
        with pg_database.admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with pg_database.server.admin() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@dataclass
class RunningRelay:
    relay: Relay
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)


@contextmanager
def relaying(dsn: str, log: Log, **options: Any) -> Iterator[RunningRelay]:
    """A relay in a thread of this process, stopped (as SIGTERM would) at the end."""
    settings = {"poll": 0.5, "max_backoff": 0.5, **options}
    relay = Relay(RelayOptions(dsn, log.base, log.writer, **settings))
    running = RunningRelay(relay, threading.Thread(target=lambda: None))

    def run() -> None:
        try:
            relay.run()
        except BaseException as exc:  # reported by the test, not lost in the thread
            running.errors.append(exc)

    running.thread = threading.Thread(target=run, name="pg-capture relay", daemon=True)
    running.thread.start()
    try:
        yield running
    finally:
        relay.stop()
        running.thread.join(20)
    assert not running.thread.is_alive(), "the relay did not stop"
    assert not running.errors, running.errors


def wait_drained(app: App, *, rejected: int = 0, timeout: float = 30) -> dict[str, Any]:
    """Wait until no capture has pending rows and ``rejected`` rows are rejected."""
    deadline = time.monotonic() + timeout
    while True:
        state = app.status()
        pending = sum(c["pending"] for c in state["captures"])
        refused = sum(c["rejected"] for c in state["captures"])
        if pending == 0 and refused == rejected:
            return state
        rows = [row for c in state["captures"] for row in c["rejected_rows"]]
        assert refused <= rejected, f"{refused} rejected rows, not {rejected}: {rows}"
        assert time.monotonic() < deadline, f"not drained: {pending} pending, {refused} rejected"
        time.sleep(0.1)
