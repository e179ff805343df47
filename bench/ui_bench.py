"""The web UI's figures of ``make bench``: server time of each page over a 100,000-event log.

One log is built once per run: 100,000 events of the billing workload (``bench.workload``)
received over the last 24 hours (the runtime's clock is moved through them, so the hourly
chart has 24 full hours, 23 of them settled), plus one invoice with a long timeline of
``LONG`` updates. The app then runs in process (its lifespan, a real SQLite store on disk,
fsync'd commits) and each page is asked ``--ui-requests`` times one after another through
httpx's ASGI transport by a signed-in auditor, with varying parameters, with the garbage
collector tuned as ``indelible serve`` tunes it. The figure is the
server time the page reports in its ``Server-Timing`` header: from the request reaching the
page to the answer ready, the ``audit.read`` commit included.

There is no peer to run for a web UI: each page is set against the goal of issue 7
(300 ms of server time per page), and the JSON API's answer to the same read is timed beside
it (``GET /v1/events``, ``/history``, ``/state``), so the ratio shows what the HTML costs.
The entity page keeps the decoded steps of records it replayed (``service.stepcache``): state
at T is measured warm (as a record being looked at) and cold (the cache emptied before each
request, as after a restart).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bench.measure import Row, fresh_directory, settle_heap
from bench.workload import make_events
from indelible.core.event import DEFAULT_LIMITS, validate_batch
from indelible.server import Runtime, create_app
from indelible.server.ui.web import UiState
from indelible.service.logs import init_log
from indelible.storage.sqlite import SQLiteStore

__all__ = ["main", "ui_rows"]

GOAL_MS = 300.0
TITLE = "Web UI: server time per page over a 100,000-event log"
LOG_EVENTS = 100_000
LONG = 5_000  # events in the long timeline
_HOUR = 3_600_000
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_TIMING = re.compile(r"app;dur=([0-9.]+)")


@dataclass
class Figure:
    page: str
    p50: float
    p99: float
    wall_p50: float  # as the client saw it (the ASGI transport included)
    api_p50: float | None = None  # the JSON API's answer to the same read, as the client saw it


class Clock:
    """The runtime's clock: moved through the last 24 hours while the log is built."""

    def __init__(self) -> None:
        self.fixed: int | None = None

    def __call__(self) -> int:
        return self.fixed if self.fixed is not None else time.time_ns() // 1_000_000


def _long_timeline() -> list[dict[str, Any]]:
    record = {"type": "invoice", "id": "INV-LONG"}
    events: list[dict[str, Any]] = []
    base = 1_740_787_200_000  # 2025-03-01
    for n in range(LONG):
        before, after = n * 10, n * 10 + 10
        changes = [{"field": "amount_due", "before": before, "after": after}]
        if n == 0:
            changes = [
                {"field": "amount_due", "after": after},
                {"field": "status", "after": "open"},
            ]
        moment = time.gmtime((base + n * 60_000) / 1000)
        events.append(
            {
                "event_id": f"01950000-0000-7000-8000-{n:012d}",
                "event_type": "invoice.created" if n == 0 else "invoice.updated",
                "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", moment),
                "actor": {"id": f"user-{n % 13}", "type": "user"},
                "action": "create" if n == 0 else "update",
                "outcome": "success",
                "target": record,
                "changes": changes,
            }
        )
    return events


async def _build(runtime: Runtime, log_id: int, clock: Clock, console: Console) -> None:
    events = make_events(LOG_EVENTS - LONG)
    long = _long_timeline()
    stride = max(1, len(events) // len(long))
    merged: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        merged.append(event)
        if index % stride == 0 and long:
            merged.append(long.pop(0))
    merged.extend(long)
    served = runtime.hub.get(log_id)
    now = time.time_ns() // 1_000_000
    start = now - 24 * _HOUR + 60_000
    started = time.perf_counter()
    batch = 1_000
    for offset in range(0, len(merged), batch):
        clock.fixed = start + (now - 120_000 - start) * offset // len(merged)
        valid = validate_batch(merged[offset : offset + batch], now_ms=now, limits=DEFAULT_LIMITS)
        await asyncio.to_thread(served.append, valid)
    clock.fixed = None
    console.log(
        f"ui: {len(merged):,} events appended in {time.perf_counter() - started:.1f}s "
        f"(received over the last 24 hours)"
    )


async def _timed(
    client: httpx.AsyncClient, method: str, url: str, **kw: Any
) -> tuple[float, float]:
    """(server time from Server-Timing, time the client waited), in ms."""
    started = time.perf_counter()
    answered = await client.request(method, url, **kw)
    wall = (time.perf_counter() - started) * 1000
    if answered.status_code != 200:
        raise RuntimeError(f"{method} {url}: {answered.status_code} {answered.text[:300]}")
    found = _TIMING.search(answered.headers.get("server-timing", ""))
    if found is None:
        raise RuntimeError(f"{method} {url}: no Server-Timing header")
    return float(found.group(1)), wall


async def _api_timed(client: httpx.AsyncClient, url: str) -> float:
    started = time.perf_counter()
    answered = await client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    if answered.status_code != 200:
        raise RuntimeError(f"GET {url}: {answered.status_code} {answered.text[:300]}")
    return elapsed


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(
    browser: httpx.AsyncClient,
    api: httpx.AsyncClient,
    name: str,
    make: Callable[[int], tuple[str, str, dict[str, Any]]],
    api_url: Callable[[int], str] | None,
    requests: int,
) -> Figure:
    for n in range(3):  # warm caches the way a running server has them
        method, url, kw = make(n)
        await _timed(browser, method, url, **kw)
    times, walls = [], []
    for n in range(requests):
        method, url, kw = make(n)
        server, wall = await _timed(browser, method, url, **kw)
        times.append(server)
        walls.append(wall)
    api_p50 = None
    if api_url is not None:
        api_times = [await _api_timed(api, api_url(n)) for n in range(requests)]
        api_p50 = statistics.median(api_times)
    return Figure(
        name, statistics.median(times), _p(times, 0.99), statistics.median(walls), api_p50
    )


async def _figures(args: argparse.Namespace, workdir: Path, console: Console) -> list[Figure]:
    store = SQLiteStore(workdir / "log.db")
    clock = Clock()
    init_log(
        store,
        workdir / "keys",
        "bench",
        "bench.example/ui",
        clock_ms=clock,
        random_bytes=os.urandom,
    )
    runtime = Runtime(store, workdir / "keys", clock_ms=clock, close_store=False)
    log_id = store.get_log("bench").log_id
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)
    try:
        async with app.router.lifespan_context(app):
            await _build(runtime, log_id, clock, console)
            settle_heap()  # the garbage-collector settings `indelible serve` runs with
            _, token = runtime.keys.create(log_id, "auditor", "bench auditor", None)
            return await _pages(args, transport, app.state.ui, log_id, token, console)
    finally:
        store.close()


async def _pages(
    args: argparse.Namespace,
    transport: httpx.ASGITransport,
    app_state: UiState,
    log_id: int,
    token: str,
    console: Console,
) -> list[Figure]:
    from indelible.storage.base import EntryQuery

    rng = random.Random(7)
    runtime = app_state.runtime
    steps = app_state.runtime.steps
    rows = runtime.store.query_entries(log_id, EntryQuery(limit=LOG_EVENTS, descending=True))
    ids = [row.index.event_id for row in rows if row.index.event_id]
    actors = sorted({row.index.actor_id for row in rows[:5_000] if row.index.actor_id})
    picks = [rng.choice(ids) for _ in range(args.ui_requests + 3)]
    served = runtime.hub.get(log_id)
    deadline = time.monotonic() + 30
    while (final := served.final_checkpoint()) is None or final.row.size < len(rows):
        if time.monotonic() > deadline:
            raise RuntimeError("no final checkpoint covered the log")
        await asyncio.sleep(0.1)
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://bench") as browser,
        httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as api,
    ):
        form = await browser.get("/login")
        csrf = _CSRF.search(form.text)
        assert csrf is not None
        signed = await browser.post("/login", data={"key": token, "csrf": csrf.group(1)})
        assert signed.status_code == 303, signed.text
        page = await browser.get("/integrity")
        found = _CSRF.search(page.text)
        assert found is not None
        session_csrf = found.group(1)
        times = ["2025-03-01T12:00:00Z", "2025-03-02T06:00:00Z", "2025-03-04T18:00:00Z"]

        def get(url: str) -> tuple[str, str, dict[str, Any]]:
            return "GET", url, {}

        def cold(url: str) -> tuple[str, str, dict[str, Any]]:
            steps.clear()  # as after a restart: the record's events are decoded again
            return get(url)

        cases: list[tuple[str, Callable[[int], Any], Callable[[int], str] | None]] = [
            (
                "search, first page",
                lambda n: get("/search"),
                lambda n: "/v1/events?order=desc&limit=50",
            ),
            (
                "search, actor + type",
                lambda n: get(f"/search?actor_id={actors[n % len(actors)]}&event_type=invoice.*"),
                lambda n: f"/v1/events?order=desc&limit=50&actor_id={actors[n % len(actors)]}"
                "&event_type=invoice.*",
            ),
            ("search, free text", lambda n: get("/search?q=insufficient_funds"), None),
            (
                "event page",
                lambda n: get(f"/events/{picks[n]}"),
                lambda n: f"/v1/events/{picks[n]}",
            ),
            (
                "event, verify",
                lambda n: ("POST", f"/events/{picks[n]}/verify", {"data": {"csrf": session_csrf}}),
                None,
            ),
            (
                f"entity ({LONG:,} events), now",
                lambda n: get("/entities/invoice/INV-LONG"),
                lambda n: "/v1/entities/invoice/INV-LONG/history?order=desc&limit=100",
            ),
            (
                "entity, state at T",
                lambda n: get(f"/entities/invoice/INV-LONG?at={times[n % 3]}"),
                lambda n: f"/v1/entities/invoice/INV-LONG/state?at={times[n % 3]}",
            ),
            (
                "entity, state at T, cold",
                lambda n: cold(f"/entities/invoice/INV-LONG?at={times[n % 3]}"),
                None,
            ),
            ("integrity + chart", lambda n: get("/integrity"), None),
        ]  # fmt: skip
        figures = []
        for name, make, api_url in cases:
            figure = await _measure(browser, api, name, make, api_url, args.ui_requests)
            console.log(
                f"ui: {name}: p50 {figure.p50:.1f} ms, p99 {figure.p99:.1f} ms"
                + (
                    f"; as the client saw it {figure.wall_p50:.1f} ms, "
                    f"the JSON API's same read {figure.api_p50:.1f} ms"
                    if figure.api_p50
                    else ""
                )
            )
            figures.append(figure)
        return figures


def ui_rows(args: argparse.Namespace, console: Console) -> list[Row]:
    """The UI's rows of the side-by-side table: p50 and p99 of each page against the goal."""
    if not hasattr(args, "ui_requests"):
        args.ui_requests = 50
    with fresh_directory(getattr(args, "workdir", None), prefix="bench-ui-") as workdir:
        figures = asyncio.run(_figures(args, workdir, console))
    rows: list[Row] = []
    for figure in figures:
        label = f"UI {figure.page}"
        rows.append(Row(f"{label}, p50", "ms", "goal (issue 7)", GOAL_MS, figure.p50, False))
        rows.append(Row(f"{label}, p99", "ms", "goal (issue 7)", GOAL_MS, figure.p99, False))
        if figure.api_p50 is not None:
            rows.append(
                Row(
                    f"{label}, client p50",
                    "ms",
                    "JSON API, same read",
                    figure.api_p50,
                    figure.wall_p50,
                    False,
                )
            )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    console.log(f"ui: load average at the end (1, 5, 15 min, {os.cpu_count()} cores): {load}")
    missed = [f.page for f in figures if f.p99 > GOAL_MS]
    console.log(
        "ui: every page under 300 ms at p99" if not missed else f"ui: over 300 ms: {missed}"
    )
    return rows


def main() -> None:
    from bench.measure import print_table

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ui-requests", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    console = Console()
    print_table(ui_rows(args, console), title=TITLE)


if __name__ == "__main__":
    main()
