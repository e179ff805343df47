"""A small HTTP/1.1 load generator for ``make bench``, run in a process of its own.

Python HTTP clients (httpx above all) spend more CPU per request than the server they load,
so on a 2-core machine they would measure themselves. This one keeps each connection alive,
sends pre-built request bytes over asyncio streams and parses only what it must: the status
line, the headers, and a body read by ``Content-Length`` or ``Transfer-Encoding: chunked``
(reconnecting whenever the server closes). Each of ``connections`` connections runs a closed
loop: send, wait for the whole response, send again.

Timing: every connection starts at once; nothing is recorded during ``warmup`` seconds, then
every request that *completes* within the next ``seconds`` is recorded (latency from its
first byte sent to its last byte received, ``time.perf_counter_ns``), so throughput is
recorded events over exactly ``seconds``. Every non-2xx status and every transport failure
is an error, counted and sampled, never dropped.

Ingest bodies carry fresh, unique UUIDv7-shaped ``event_id``s (events are idempotent by id,
so a repeated one would measure nothing): realistic billing events from ``bench.workload``,
with a recent ``occurred_at``, are encoded once as templates and each request splices a new
id into them, which costs about a microsecond per event.

``python -m bench.http_load '<LoadSpec as JSON>'`` prints one ``LoadResult`` as JSON;
:func:`run_load` runs exactly that in a subprocess, so the generator has its own core and GIL.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.workload import event_bytes, make_events

__all__ = ["LoadResult", "LoadSpec", "iso_ms", "run_load", "uuid7"]

_ROOT = Path(__file__).resolve().parents[1]
_TEMPLATES = 2048
_PLACEHOLDER = "00000000-0000-7000-8000-000000000000"
_SAMPLES = 5
_STREAM_LIMIT = 1 << 20


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this client understands it."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One load run. ``batch`` events per ``POST /v1/events``; ``batch=0``: GET ``paths``."""

    port: int
    connections: int
    seconds: float
    warmup: float = 1.0
    host: str = "127.0.0.1"
    api_key: str | None = None
    batch: int = 1
    paths: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    events: int
    seconds: float
    events_per_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int]
    errors: int  # non-2xx responses plus transport failures
    transport_errors: int
    samples: list[str] = field(default_factory=list)  # the first few errors, verbatim
    client_cpu: float = 0.0  # the generator's CPU seconds per wall second (1.0 = saturated)


def uuid7(ms: int, counter: int, salt: int) -> str:
    """A UUIDv7 string: 48 bits of ``ms``, 26 of ``salt`` (in rand_a and rand_b), then a
    48-bit ``counter``; unique for distinct ``(ms, salt, counter)``."""
    rand_a = (salt >> 14) & 0xFFF
    clock_seq = 0x8000 | (salt & 0x3FFF)  # variant 0b10, then 14 bits of salt
    return (
        f"{(ms >> 16) & 0xFFFFFFFF:08x}-{ms & 0xFFFF:04x}-7{rand_a:03x}-{clock_seq:04x}-"
        f"{counter & 0xFFFFFFFFFFFF:012x}"
    )


def iso_ms(ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` for a Unix time in milliseconds."""
    t = time.gmtime(ms // 1000)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ms % 1000:03d}Z"
    )


class _Bodies:
    """Event bodies with fresh ids: an id spliced between the two halves of a template."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        now = time.time_ns() // 1_000_000
        self._parts: list[tuple[bytes, bytes]] = []
        for event in make_events(_TEMPLATES, seed):
            event["occurred_at"] = iso_ms(now - rng.randrange(1_000, 60_000))  # recent, past
            event["event_id"] = _PLACEHOLDER
            before, after = event_bytes(event).split(_PLACEHOLDER.encode())
            self._parts.append((before, after))
        salt = int.from_bytes(os.urandom(4), "big")  # distinct from any other run's ids
        self._prefix = uuid7(now, 0, salt)[:-12].encode()
        self._next = 0

    def event(self) -> bytes:
        n = self._next
        self._next = n + 1
        before, after = self._parts[n % len(self._parts)]
        return b"%s%s%012x%s" % (before, self._prefix, n, after)

    def array(self, count: int) -> bytes:
        return b"[" + b",".join([self.event() for _ in range(count)]) + b"]"


def _head(spec: LoadSpec, method: str, path: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {spec.host}:{spec.port}"]
    if spec.api_key is not None:
        lines.append(f"Authorization: Bearer {spec.api_key}")
    return ("\r\n".join(lines) + "\r\n").encode()


def _requests(spec: LoadSpec) -> tuple[Callable[[], bytes], int]:
    """A function making the next request's bytes, and the events each one carries."""
    if spec.batch == 0:
        heads = [_head(spec, "GET", path) + b"\r\n" for path in spec.paths]
        rng = random.Random(spec.seed)
        return (lambda: heads[rng.randrange(len(heads))]), 0
    bodies = _Bodies(spec.seed)
    post = _head(spec, "POST", "/v1/events") + b"Content-Type: application/json\r\n"

    def make() -> bytes:
        body = bodies.event() if spec.batch == 1 else bodies.array(spec.batch)
        return post + b"Content-Length: %d\r\n\r\n" % len(body) + body

    return make, spec.batch


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields
            return b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, keep the connection, body) of one response; interim 1xx ones skipped."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.") or len(lines[0]) < 12:
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        status = int(lines[0][9:12])
        if status >= 200:
            break
    keep, length, chunked = lines[0].startswith(b"HTTP/1.1"), None, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            keep = b"close" not in value and (keep or b"keep-alive" in value)
    if chunked:
        return status, keep, await _read_chunked(reader)
    if length is not None:
        return status, keep, await reader.readexactly(length)
    if status in (204, 304):
        return status, keep, b""
    return status, False, await reader.read()  # delimited by the server closing


class _Recorder:
    def __init__(self, start: int, warmup: float, seconds: float) -> None:
        self.t0 = start + int(warmup * 1e9)
        self.t1 = self.t0 + int(seconds * 1e9)
        self.latencies: list[int] = []
        self.statuses: Counter[int] = Counter()
        self.events = self.errors = self.transport_errors = 0
        self.samples: list[str] = []

    def inside(self, at: int) -> bool:
        return self.t0 <= at <= self.t1

    def response(self, started: int, finished: int, status: int, events: int, body: bytes) -> None:
        if not self.inside(finished):
            return
        self.latencies.append(finished - started)
        self.statuses[status] += 1
        if 200 <= status < 300:
            self.events += events
            return
        self.errors += 1
        if len(self.samples) < _SAMPLES:
            self.samples.append(f"{status} {body[:300].decode(errors='replace')}")

    def failure(self, at: int, exc: BaseException) -> None:
        if not self.inside(at):
            return
        self.errors += 1
        self.transport_errors += 1
        if len(self.samples) < _SAMPLES:
            self.samples.append(f"transport: {type(exc).__name__}: {exc}")


async def _connect(spec: LoadSpec) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(spec.host, spec.port, limit=_STREAM_LIMIT)


async def _connection(
    spec: LoadSpec, make: Callable[[], bytes], events: int, record: _Recorder
) -> None:
    clock = time.perf_counter_ns
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while clock() < record.t1:
        request = make()
        started = clock()
        try:
            if streams is None:
                streams = await _connect(spec)
                started = clock()
            reader, writer = streams
            writer.write(request)
            await writer.drain()
            status, keep, body = await _read_response(reader)
        except (OSError, EOFError, asyncio.IncompleteReadError, ValueError, ProtocolError) as exc:
            record.failure(clock(), exc)
            if streams is not None:
                streams[1].close()
            streams = None
            await asyncio.sleep(0.01)  # a refused connection must not spin
            continue
        record.response(started, clock(), status, events, body)
        if not keep:
            streams[1].close()
            streams = None
    if streams is not None:
        streams[1].close()


def _percentile(ordered: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanoseconds, in milliseconds."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1] / 1e6


async def _run(spec: LoadSpec) -> LoadResult:
    make, events = _requests(spec)
    gc.collect()
    gc.freeze()
    record = _Recorder(time.perf_counter_ns(), spec.warmup, spec.seconds)
    tasks = [
        asyncio.create_task(_connection(spec, make, events, record))
        for _ in range(spec.connections)
    ]
    await asyncio.sleep(max(0.0, (record.t0 - time.perf_counter_ns()) / 1e9))
    cpu = time.process_time()
    await asyncio.sleep(max(0.0, (record.t1 - time.perf_counter_ns()) / 1e9))
    cpu = (time.process_time() - cpu) / spec.seconds
    await asyncio.gather(*tasks)
    ordered = sorted(record.latencies)
    return LoadResult(
        requests=len(ordered),
        events=record.events,
        seconds=spec.seconds,
        events_per_s=record.events / spec.seconds,
        requests_per_s=len(ordered) / spec.seconds,
        p50_ms=_percentile(ordered, 0.50),
        p99_ms=_percentile(ordered, 0.99),
        max_ms=ordered[-1] / 1e6 if ordered else float("nan"),
        statuses=dict(sorted(record.statuses.items())),
        errors=record.errors,
        transport_errors=record.transport_errors,
        samples=record.samples,
        client_cpu=cpu,
    )


def run_load(spec: LoadSpec) -> LoadResult:
    """Run ``spec`` in a fresh ``python -m bench.http_load`` process; its result."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.http_load", json.dumps(asdict(spec))],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=spec.warmup + spec.seconds + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}):\n{done.stderr}")
    document = json.loads(done.stdout)
    document["statuses"] = {int(k): v for k, v in document["statuses"].items()}
    return LoadResult(**document)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m bench.http_load '<LoadSpec as JSON>'")
    document = json.loads(argv[0])
    document["paths"] = tuple(document.get("paths", ()))
    gc.set_threshold(100_000, 50, 100)
    result = asyncio.run(_run(LoadSpec(**document)))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
