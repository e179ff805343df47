"""The HTTP figures of ``make bench``: a real ``indelible run`` subprocess, loaded over TCP.

Three figures, each against a server started on a fresh data directory and stopped with
SIGTERM (which must exit 0):

1. ingest, 64 connections each sending one event per ``POST /v1/events``;
2. ingest, 4 connections each sending 1,000-event batches;
3. ``GET /v1/events?target_type=invoice&target_id=…&limit=100`` on a log of 1,000,000
   events (20,000 with ``--quick``) over 10,000 invoices (about 100 events each), one
   connection, so the latency is the query's and not a queue's. The log is built before the
   server starts, in process, with the ``Sequencer`` on the data directory ``run`` serves.

Then ``bench.evidence_bench``: ack → published latency on a fresh server, and proof latency
on the query figure's log, while its server runs (so the log is built once).

The load comes from ``bench.http_load`` in a process of its own. Ingest is set beside
Tessera's *published* figure (about 10,000 writes/s on NVMe): a number from its authors,
not measured here. Goals are printed beside the results with PASS/MISS.

Authentication: if ``indelible run`` prints ``admin API key (shown once): <key>``, every
request carries ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from bench.http_load import LoadResult, LoadSpec, iso_ms, run_load, uuid7
from bench.measure import Row, fresh_directory, settle_heap
from bench.workload import make_events
from indelible.config import load_settings
from indelible.core.event import validate_batch
from indelible.service.ingest import Publisher, Sequencer
from indelible.service.logs import default_origin, init_log
from indelible.storage import open_store

__all__ = ["http_rows"]

TESSERA = "Tessera (published; not run here)"
TESSERA_WRITES_PER_S = 10_000.0

_ROOT = Path(__file__).resolve().parents[1]
_KEY_LINE = re.compile(r"admin API key \(shown once\): (\S+)")
_BUILD_BATCH = 1_000
_EVENTS_PER_TARGET = 100
_USERS = 2_000
_DISTINCT = 4_096


@dataclass
class Figure:
    """One measured line of the latency table."""

    name: str
    goal: str
    result: LoadResult | None = None
    passed: bool | None = None
    note: str = ""


@dataclass
class _Server:
    port: int
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    api_key: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self) -> dict[str, str]:
        return {} if self.api_key is None else {"Authorization": f"Bearer {self.api_key}"}

    def spec(self, **options: Any) -> LoadSpec:
        return LoadSpec(port=self.port, api_key=self.api_key, **options)

    def tail(self, lines: int = 15) -> str:
        text = self.stderr.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_serving(server: _Server, timeout: float = 60) -> None:
    """Until stdout says "serving on" and /healthz answers; picks up the admin key line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"indelible run exited early:\n{server.tail()}")
        text = server.stdout.read_text(errors="replace")
        if (found := _KEY_LINE.search(text)) is not None:
            server.api_key = found.group(1)
        if "serving on" in text:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                    return
        time.sleep(0.05)
    raise RuntimeError(f"indelible run never became healthy:\n{server.tail()}")


def _stop(server: _Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        code = None
    if code != 0:
        server.problems.append(f"the server exited {code} after SIGTERM:\n{server.tail()}")


@contextlib.contextmanager
def _live_server(data: Path) -> Iterator[_Server]:
    """``indelible run --data DATA`` on a free port; stdout and stderr go to files (an
    access-log line per request would otherwise fill a pipe nobody reads)."""
    stdout, stderr = data.with_suffix(".stdout"), data.with_suffix(".stderr")
    command = [sys.executable, "-m", "indelible.cli", "run", "--data", str(data)]
    port = _free_port()
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([*command, "--port", str(port)], stdout=out, stderr=err)
    server = _Server(port, process, stdout, stderr)
    try:
        _wait_serving(server)
        yield server
    finally:
        if process.poll() is None:
            _stop(server)
        elif not server.problems:
            server.problems.append(f"the server died ({process.returncode}):\n{server.tail()}")


def _durations(args: argparse.Namespace) -> tuple[float, float]:
    return (2.0, 0.5) if args.quick else (10.0, 2.0)


def _log_result(console: Console, name: str, result: LoadResult) -> None:
    console.log(
        f"Indelible over HTTP: {name}: {result.events_per_s:,.0f} events/s, "
        f"{result.requests_per_s:,.0f} requests/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, max {result.max_ms:.1f} ms; statuses {result.statuses}; "
        f"load generator CPU {result.client_cpu:.0%}"
    )
    if result.client_cpu > 0.8:
        console.log(
            f"[yellow]{name}: the load generator used {result.client_cpu:.0%} of a core; "
            "it may be what limits this figure[/yellow]"
        )
    if result.errors:
        console.log(
            f"[bold red]{name}: {result.errors:,} ERRORS "
            f"({result.transport_errors:,} transport)[/bold red]"
        )
        for sample in result.samples:
            console.log(f"  {sample}", style="red", markup=False, highlight=False)


def _ingest_figures(args: argparse.Namespace, console: Console, data: Path) -> list[Figure]:
    seconds, warmup = _durations(args)
    single = Figure("64 clients, 1 event each", "≥ 5,000 events/s and p99 < 50 ms")
    batched = Figure("4 clients, 1,000-event batches", "≥ 40,000 events/s")
    with _live_server(data) as server:
        auth = "with" if server.api_key else "without"
        console.log(f"indelible run on port {server.port} ({auth} an admin API key)")
        for figure, connections, batch, seed in ((single, 64, 1, 1), (batched, 4, 1000, 2)):
            spec = server.spec(
                connections=connections, batch=batch, seconds=seconds, warmup=warmup, seed=seed
            )
            figure.result = run_load(spec)
            _log_result(console, figure.name, figure.result)
    single.passed = _clean(single.result) and _at_least(single.result, 5_000, p99_ms=50)
    batched.passed = _clean(batched.result) and _at_least(batched.result, 40_000)
    _report_problems(console, server)
    return [single, batched]


def _clean(result: LoadResult | None) -> bool:
    return result is not None and result.errors == 0


def _at_least(result: LoadResult | None, rate: float, p99_ms: float | None = None) -> bool:
    assert result is not None
    return result.events_per_s >= rate and (p99_ms is None or result.p99_ms < p99_ms)


def _report_problems(console: Console, server: _Server) -> None:
    for problem in server.problems:
        console.log(problem, style="bold red", markup=False, highlight=False)


# ---- the query figure


def invoice_id(k: int) -> str:
    return f"inv_{k:014x}"


def _events_for_log(total: int, targets: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    """``total`` events in batches: realistic bodies (``_DISTINCT`` of them, cycled) with a
    fresh id, a rising ``occurred_at`` over the last 30 days, one of ``targets`` invoices as
    target and one of ``_USERS`` users as a human actor."""
    rng = random.Random(seed)
    pool = make_events(min(total, _DISTINCT), seed)
    now = time.time_ns() // 1_000_000
    span = 30 * 86_400_000
    salt = rng.getrandbits(26)
    for start in range(0, total, _BUILD_BATCH):
        batch = []
        for i in range(start, min(total, start + _BUILD_BATCH)):
            base = pool[i % len(pool)]
            ms = now - span + span * i // total
            actor = base["actor"]
            if actor["type"] == "user":
                actor = {**actor, "id": f"usr_{rng.randrange(_USERS):012x}"}
            event = {**base, "event_id": uuid7(ms, i, salt), "occurred_at": iso_ms(ms)}
            event["actor"] = actor
            event["target"] = {"type": "invoice", "id": invoice_id(rng.randrange(targets))}
            batch.append(event)
        yield batch


def _build_log(console: Console, data: Path, total: int, targets: int) -> None:
    """The log ``indelible run --data DATA`` serves (named "default", keys in DATA/keys)."""
    settings = load_settings({"data": str(data)})
    data.mkdir(parents=True)
    settle_heap()  # the in-process subjects' GC settings (a no-op after the other sections)
    store = open_store(settings.store_url, create=True)

    def now_ms() -> int:
        return time.time_ns() // 1_000_000

    try:
        origin = default_origin(socket.gethostname(), settings.log)
        opened = init_log(
            store, settings.keys_dir, settings.log, origin, clock_ms=now_ms, random_bytes=os.urandom
        )
        sequencer = Sequencer(store, opened.info, clock_ms=now_ms, random_bytes=os.urandom)
        started = time.perf_counter()
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        try:
            with progress:
                task = progress.add_task("building the query log", total=total)
                for batch in _events_for_log(total, targets, seed=3):
                    sequencer.append(validate_batch(batch, now_ms=now_ms()))
                    progress.advance(task, len(batch))
        finally:
            sequencer.close()
        assert opened.signer is not None
        Publisher(store, opened.info, opened.signer, clock_ms=now_ms).publish()
        spent = time.perf_counter() - started
    finally:
        store.close()
    console.log(
        f"query log: {total:,} events over {targets:,} invoices built in process in "
        f"{spent:.1f}s ({total / spent:,.0f} events/s, batches of {_BUILD_BATCH:,}, durable)"
    )


def _count_items(document: Any) -> int | None:
    if isinstance(document, list):
        return len(document)
    if isinstance(document, dict):
        lists = [value for value in document.values() if isinstance(value, list)]
        return len(lists[0]) if lists else None
    return None


def _probe(server: _Server, path: str) -> tuple[str, int | None]:
    """Why the query route cannot be measured ("" when it answers 2xx), and the number of
    events the answer holds, when that can be told."""
    response = httpx.get(server.base + path, headers=server.headers(), timeout=30)
    if response.status_code in (404, 405):
        return f"query route not available ({response.status_code})", None
    if response.status_code in (401, 403):
        return f"query refused ({response.status_code}): no usable API key", None
    if not 200 <= response.status_code < 300:
        return f"query answered {response.status_code}: {response.text[:200]}", None
    try:
        return "", _count_items(response.json())
    except ValueError:
        return "", None


def _short(count: int) -> str:
    return f"{count / 1e6:g}M" if count >= 1_000_000 else f"{count / 1e3:g}k"


ServerFigures = Callable[[argparse.Namespace, Console, _Server, Path], list[Figure]]


def _query_figure(
    args: argparse.Namespace, console: Console, data: Path, more: ServerFigures
) -> tuple[Figure, list[Figure]]:
    """The query figure, then ``more`` figures from the same server on the same log."""
    total = 20_000 if args.quick else 1_000_000
    targets = max(1, total // _EVENTS_PER_TARGET)
    figure = Figure(f"query by target, {_short(total)} events", "p50 < 10 ms")
    _build_log(console, data, total, targets)
    seconds, warmup = _durations(args)
    rng = random.Random(4)
    paths = tuple(
        f"/v1/events?target_type=invoice&target_id={invoice_id(rng.randrange(targets))}&limit=100"
        for _ in range(256)
    )
    with _live_server(data) as server:
        figure.note, count = _probe(server, paths[0])
        if figure.note:
            console.log(figure.note, style="yellow", markup=False)
        else:
            console.log(f"query probe: {'?' if count is None else count} events in the answer")
            spec = server.spec(connections=1, batch=0, paths=paths, seconds=seconds, warmup=warmup)
            figure.result = run_load(spec)
            _log_result(console, figure.name, figure.result)
            figure.passed = _clean(figure.result) and figure.result.p50_ms < 10
        extra = more(args, console, server, data)
    _report_problems(console, server)
    return figure, extra


# ---- output


def _verdict(figure: Figure) -> str:
    if figure.passed is None:
        return "—"
    if figure.result is not None and figure.result.errors:
        return "[bold red]MISS (errors)[/bold red]"
    return "[green]PASS[/green]" if figure.passed else "[red]MISS[/red]"


def _print_latency(console: Console, figures: list[Figure]) -> None:
    table = Table(title="Indelible over HTTP: latency and goals (same machine, same run)")
    for name in ("figure", "rate", "p50 ms", "p99 ms", "max ms", "errors", "goal", "result"):
        table.add_column(name, justify="left" if name in ("figure", "goal") else "right")
    for figure in figures:
        r = figure.result
        if r is None:
            table.add_row(figure.name, figure.note or "—", "—", "—", "—", "—", figure.goal, "—")
            continue
        rate = f"{r.events_per_s:,.0f} ev/s" if r.events else f"{r.requests_per_s:,.0f} req/s"
        errors = f"[bold red]{r.errors:,}[/bold red]" if r.errors else "0"
        table.add_row(
            figure.name,
            rate,
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.1f}",
            errors,
            figure.goal,
            _verdict(figure),
        )
    if not console.is_terminal and console.width < 120:
        console = Console(width=120)  # piped to a file or CI log: do not wrap the table
    console.print(table)


def _rows(figures: list[Figure]) -> list[Row]:
    single, batched, query = figures

    def rate(figure: Figure) -> float | None:
        return None if figure.result is None else figure.result.events_per_s

    p50 = None if query.result is None else query.result.p50_ms
    return [
        Row(
            "HTTP ingest, 64 clients x 1 event",
            "events/s",
            TESSERA,
            TESSERA_WRITES_PER_S,
            rate(single),
        ),
        Row(
            "HTTP ingest, 4 clients x 1,000",
            "events/s",
            TESSERA,
            TESSERA_WRITES_PER_S,
            rate(batched),
        ),
        Row(f"HTTP {query.name}: p50", "ms", "— (no peer)", None, p50, False),
    ]


def http_rows(args: argparse.Namespace, console: Console) -> list[Row]:
    """Run the HTTP figures, print their latency table, return their ratio rows."""
    # here, not at the top: bench.evidence_bench builds on this module
    from bench.evidence_bench import evidence_rows, proof_figures, publish_figures

    started = time.perf_counter()
    with fresh_directory(args.workdir, prefix="http-") as root:
        ingest = _ingest_figures(args, console, root / "ingest")
        publish = publish_figures(args, console, root / "publish")
        query, proofs = _query_figure(args, console, root / "query", proof_figures)
    _print_latency(console, [*ingest, *publish, query, *proofs])
    console.log(f"HTTP figures took {time.perf_counter() - started:.0f}s")
    return _rows([*ingest, query]) + evidence_rows(publish, proofs)
