"""The evidence figures of ``make bench``: how soon an acknowledged event is published, and
how fast proofs are served, both over HTTP from a real ``indelible run``.

1. **ack → published**: on a fresh server with the default settings (a checkpoint signed
   every ``checkpoint_interval`` = 1 s when the tree grew), the time from each ``201`` to the
   first ``GET /v1/checkpoint`` answer whose tree size covers the event's ``seq``. A poller
   fetches the checkpoint every ``_POLL`` seconds over one keep-alive connection and records
   (time, size); the poll resolution is measured and printed beside the figure. Two
   scenarios: *light*, one event per request at ``_LIGHT_RATE`` requests/s; *under load*,
   ``_LOAD_CLIENTS`` clients posting ``_LOAD_BATCH``-event batches as fast as they can, the
   ack time of every ``_SAMPLE_EVERY``-th batch sampled (its highest ``seq``). Every
   checkpoint the poller saw must verify with the log's ``/v1/vkey``.
2. **proofs at 1M entries**: on the query figure's log (``bench.http_bench``; built once),
   ``GET /v1/proofs/inclusion`` for random seqs, ``GET /v1/proofs/consistency`` for random
   old sizes (both against the final checkpoint) and full level-0 hash tiles
   (``/tlog/<tenant>/tile/0/<N>``), one request after another on one keep-alive connection.
   A sample of the proofs is verified here: inclusion against the answer's root, which must
   be the root its signed checkpoint carries.

The clients run in a process of their own (``python -m bench.evidence_bench KIND '<spec>'``,
on ``bench.http_load``'s HTTP/1.1 client); the timing is matched up and checked here. The
peers' publish figures (Tessera, Rekor v2) are Go and not run: they are printed as context.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import gc
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bench.http_bench import Figure, _clean, _live_server, _log_result, _report_problems, _Server
from bench.http_load import (
    LoadResult,
    LoadSpec,
    ProtocolError,
    _Bodies,
    _head,
    _percentile,
    _read_response,
)
from bench.measure import Row
from indelible.config import load_settings
from indelible.core.checkpoint import Checkpoint, open_checkpoint
from indelible.core.merkle import verify_consistency, verify_inclusion
from indelible.core.note import Verifier, parse_vkey
from indelible.core.tiles import TILE_WIDTH, tile_path
from indelible.errors import IndelibleError

__all__ = ["evidence_rows", "proof_figures", "publish_figures"]

PEERS = "Tessera publishes 0.4 to 11 s to integrate; Rekor v2 asks clients for 20 s timeouts"
TESSERA = "Tessera: 0.4 to 11 s (not run)"
PUBLISH_GOAL = "p50 ≤ 1 s and p99 ≤ 2 s"
PROOF_GOAL = "p50 < 5 ms"

_ROOT = Path(__file__).resolve().parents[1]
_POLL = 0.005
_LIGHT_RATE = 50.0
_LOAD_CLIENTS = 16
_LOAD_BATCH = 100
_SAMPLE_EVERY = 1  # parsing a 100-receipt answer costs the client ~50 µs
_SETTLE = 15.0  # how long, after the load, the last acknowledged events may take to publish
_STREAM_LIMIT = 1 << 20
_SAMPLES = 5
_CHECKED = 50  # proofs verified per figure
_FAILURES = (OSError, EOFError, asyncio.IncompleteReadError, ValueError, ProtocolError)


# ---- the client process


@dataclass(frozen=True, slots=True)
class PublishSpec:
    """One publish scenario: ``clients`` connections posting ``batch`` events per request,
    each at ``rate`` requests/s (0: as fast as it can), every ``sample_every``-th ack kept."""

    port: int
    api_key: str | None
    seconds: float
    warmup: float
    clients: int
    batch: int
    rate: float = 0.0
    sample_every: int = 1
    poll: float = _POLL
    settle: float = _SETTLE
    seed: int = 0


@dataclass(slots=True)
class PublishRun:
    """What the client saw; times are ``perf_counter_ns`` of the same process."""

    acks: list[tuple[int, int]] = field(default_factory=list)  # (201 received, highest seq)
    polls: list[tuple[int, int]] = field(default_factory=list)  # (answer received, size)
    notes: list[str] = field(default_factory=list)  # each distinct checkpoint polled
    requests: int = 0
    events: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    transport_errors: int = 0
    samples: list[str] = field(default_factory=list)
    client_cpu: float = 0.0

    def failure(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < _SAMPLES:
            self.samples.append(what)


@dataclass(frozen=True, slots=True)
class RequestsSpec:
    """GET ``paths`` one after another; the first ``warmup`` untimed; the bodies of the
    timed requests at ``keep`` sent back."""

    port: int
    api_key: str | None
    paths: tuple[str, ...]
    warmup: int
    keep: tuple[int, ...] = ()


@dataclass(slots=True)
class RequestsRun:
    latencies: list[int] = field(default_factory=list)  # ns, first byte sent to last received
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    transport_errors: int = 0
    samples: list[str] = field(default_factory=list)
    kept: dict[int, str] = field(default_factory=dict)  # timed index → base64 of the body
    client_cpu: float = 0.0


class _Connection:
    """One keep-alive HTTP/1.1 connection, reopened whenever the server closes it."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(
                self.spec.host, self.spec.port, limit=_STREAM_LIMIT
            )
        reader, writer = self._streams
        try:
            writer.write(request)
            await writer.drain()
            status, keep, body = await _read_response(reader)
        except BaseException:
            self.close()
            raise
        if not keep:
            self.close()
        return status, body

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def _get(spec: LoadSpec, path: str) -> bytes:
    return _head(spec, "GET", path) + b"\r\n"


def _count(statuses: dict[int, int], status: int) -> None:
    statuses[status] = statuses.get(status, 0) + 1


async def _poll(spec: PublishSpec, run: PublishRun, stop: asyncio.Event) -> None:
    """``GET /v1/checkpoint`` every ``spec.poll`` seconds until ``stop``; 404 (no checkpoint
    yet) is size 0."""
    connection = _Connection(LoadSpec(spec.port, 1, spec.seconds, api_key=spec.api_key))
    request = _get(connection.spec, "/v1/checkpoint")
    clock, tick = time.perf_counter_ns, int(spec.poll * 1e9)
    due, last = clock(), b""
    while not stop.is_set():
        try:
            status, body = await connection.send(request)
        except _FAILURES as exc:
            run.transport_errors += 1
            run.failure(f"poll: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)
            continue
        at = clock()
        if status == 200:
            if body != last:
                run.notes.append(body.decode())
                last = body
            run.polls.append((at, int(body.split(b"\n", 2)[1])))
        elif status == 404:
            run.polls.append((at, 0))
        else:
            run.failure(f"poll: {status} {body[:200].decode(errors='replace')}")
        due = max(due + tick, at)
        await asyncio.sleep((due - clock()) / 1e9)
    connection.close()


class _Poster:
    """One client of a publish scenario, posting until ``t1``; acks inside ``[t0, t1]``."""

    def __init__(self, spec: PublishSpec, run: PublishRun, seed: int) -> None:
        self.spec, self.run = spec, run
        self.t0 = self.t1 = 0
        load = LoadSpec(spec.port, 1, spec.seconds, api_key=spec.api_key)
        self.connection = _Connection(load)
        self.post = _head(load, "POST", "/v1/events") + b"Content-Type: application/json\r\n"
        self.bodies = _Bodies(seed)

    def request(self) -> bytes:
        batch = self.spec.batch
        body = self.bodies.event() if batch == 1 else self.bodies.array(batch)
        return self.post + b"Content-Length: %d\r\n\r\n" % len(body) + body

    async def loop(self, t0: int, t1: int, counter: list[int]) -> None:
        self.t0, self.t1 = t0, t1
        clock, spec = time.perf_counter_ns, self.spec
        gap = int(1e9 / spec.rate) if spec.rate else 0
        due = clock()
        while clock() < self.t1:
            if gap:
                due += gap
                await asyncio.sleep(max(0.0, (due - clock()) / 1e9))
            try:
                status, body = await self.connection.send(self.request())
            except _FAILURES as exc:
                self._failed(clock(), exc)
                await asyncio.sleep(0.01)
                continue
            self._answered(clock(), status, body, counter)
        self.connection.close()

    def _failed(self, at: int, exc: BaseException) -> None:
        if self.t0 <= at <= self.t1:
            self.run.transport_errors += 1
            self.run.failure(f"transport: {type(exc).__name__}: {exc}")

    def _answered(self, at: int, status: int, body: bytes, counter: list[int]) -> None:
        run = self.run
        if not self.t0 <= at <= self.t1:
            return
        run.requests += 1
        _count(run.statuses, status)
        if status != 201:
            run.failure(f"{status} {body[:300].decode(errors='replace')}")
            return
        run.events += self.spec.batch
        counter[0] += 1
        if counter[0] % self.spec.sample_every == 0:
            receipts = json.loads(body)["receipts"]
            run.acks.append((at, max(receipt["seq"] for receipt in receipts)))


async def _settle(spec: PublishSpec, run: PublishRun) -> None:
    """Until a polled checkpoint covers the last sampled ack, or ``spec.settle`` seconds."""
    newest = max((seq for _, seq in run.acks), default=-1)
    deadline = time.perf_counter() + spec.settle
    while time.perf_counter() < deadline:
        if run.polls and run.polls[-1][1] > newest:
            return
        await asyncio.sleep(spec.poll)


async def _publish(spec: PublishSpec) -> PublishRun:
    run, stop = PublishRun(), asyncio.Event()
    clients = [_Poster(spec, run, spec.seed * 1000 + k) for k in range(spec.clients)]
    poller = asyncio.create_task(_poll(spec, run, stop))
    t0 = time.perf_counter_ns() + int(spec.warmup * 1e9)
    t1 = t0 + int(spec.seconds * 1e9)
    counter = [0]
    posters = [asyncio.create_task(client.loop(t0, t1, counter)) for client in clients]
    await asyncio.sleep(max(0.0, (t0 - time.perf_counter_ns()) / 1e9))
    cpu = time.process_time()
    await asyncio.sleep(max(0.0, (t1 - time.perf_counter_ns()) / 1e9))
    run.client_cpu = (time.process_time() - cpu) / spec.seconds
    await asyncio.gather(*posters)
    await _settle(spec, run)
    stop.set()
    await poller
    return run


async def _requests(spec: RequestsSpec) -> RequestsRun:
    run = RequestsRun()
    connection = _Connection(LoadSpec(spec.port, 1, 0, api_key=spec.api_key))
    keep, clock = frozenset(spec.keep), time.perf_counter_ns
    started = cpu = 0.0
    for i, path in enumerate(spec.paths):
        timed = i - spec.warmup
        if timed == 0:
            started, cpu = time.perf_counter(), time.process_time()
        request = _get(connection.spec, path)
        sent = clock()
        try:
            status, body = await connection.send(request)
        except _FAILURES as exc:
            if timed >= 0:
                run.errors += 1
                run.transport_errors += 1
                if len(run.samples) < _SAMPLES:
                    run.samples.append(f"transport: {type(exc).__name__}: {exc}")
            continue
        done = clock()
        if timed < 0:
            continue
        run.latencies.append(done - sent)
        _count(run.statuses, status)
        if status != 200:
            run.errors += 1
            if len(run.samples) < _SAMPLES:
                run.samples.append(f"{status} {body[:300].decode(errors='replace')}")
        elif timed in keep:
            run.kept[timed] = base64.b64encode(body).decode()
    run.seconds = time.perf_counter() - started
    run.client_cpu = (time.process_time() - cpu) / max(run.seconds, 1e-9)
    connection.close()
    return run


def _run_child(kind: str, spec: PublishSpec | RequestsSpec, timeout: float) -> dict[str, Any]:
    """Run one client in a fresh ``python -m bench.evidence_bench`` process; its JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.evidence_bench", kind, json.dumps(asdict(spec))],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} client failed ({done.returncode}):\n{done.stderr}")
    document: dict[str, Any] = json.loads(done.stdout)
    document["statuses"] = {int(k): v for k, v in document["statuses"].items()}
    return document


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("publish", "requests"):
        raise SystemExit("usage: python -m bench.evidence_bench publish|requests '<spec JSON>'")
    document = json.loads(argv[1])
    gc.set_threshold(100_000, 50, 100)
    result: PublishRun | RequestsRun
    if argv[0] == "publish":
        result = asyncio.run(_publish(PublishSpec(**document)))
    else:
        document["paths"], document["keep"] = tuple(document["paths"]), tuple(document["keep"])
        result = asyncio.run(_requests(RequestsSpec(**document)))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")


# ---- ack → published


def _publish_run(spec: PublishSpec) -> PublishRun:
    document = _run_child("publish", spec, spec.warmup + spec.seconds + spec.settle + 120)
    document["acks"] = [tuple(pair) for pair in document["acks"]]
    document["polls"] = [tuple(pair) for pair in document["polls"]]
    return PublishRun(**document)


def _published_after(run: PublishRun) -> tuple[list[int], int]:
    """Each sampled ack's wait (ns) until a polled checkpoint covered it, sorted, and how
    many were never covered. A checkpoint polled before the ack arrived counts as 0."""
    times, sizes, high = [], [], 0
    for at, size in run.polls:
        high = max(high, size)
        times.append(at)
        sizes.append(high)
    waits, missing = [], 0
    for acked, seq in run.acks:
        i = bisect.bisect_right(sizes, seq)  # the first poll whose size exceeds seq
        if i == len(sizes):
            missing += 1
        else:
            waits.append(max(0, times[i] - acked))
    return sorted(waits), missing


def _poll_resolution(run: PublishRun) -> tuple[float, float]:
    """The median and p99 interval between consecutive poll answers, in ms."""
    gaps = sorted(b[0] - a[0] for a, b in zip(run.polls, run.polls[1:], strict=False))
    return _percentile(gaps, 0.50), _percentile(gaps, 0.99)


def _verify_notes(server: _Server, run: PublishRun) -> list[str]:
    """Why the polled checkpoints cannot be trusted ([] when every one verifies with the
    log's /v1/vkey and every polled size is one of theirs)."""
    headers = server.headers()
    vkey = httpx.get(f"{server.base}/v1/vkey", headers=headers, timeout=30).text.strip()
    final = httpx.get(f"{server.base}/v1/checkpoint", headers=headers, timeout=30).text
    verifier = parse_vkey(vkey)
    problems, sizes = [], {0}
    for note in [*run.notes, final]:
        try:
            checkpoint, _ = open_checkpoint(note, verifier)
        except IndelibleError as exc:
            problems.append(f"checkpoint does not verify: {exc}: {note[:120]!r}")
            continue
        sizes.add(checkpoint.size)
    unsigned = {size for _, size in run.polls} - sizes
    if unsigned:
        problems.append(f"polled sizes without a verified checkpoint: {sorted(unsigned)[:5]}")
    return problems


def _publish_result(spec: PublishSpec, run: PublishRun, problems: list[str]) -> LoadResult:
    waits, missing = _published_after(run)
    errors = run.errors + missing + len(problems)
    samples = [*run.samples, *problems]
    if missing:
        samples.append(f"{missing} acknowledged events not published within {spec.settle:g}s")
    return LoadResult(
        requests=run.requests,
        events=run.events,
        seconds=spec.seconds,
        events_per_s=run.events / spec.seconds,
        requests_per_s=run.requests / spec.seconds,
        p50_ms=_percentile(waits, 0.50),
        p99_ms=_percentile(waits, 0.99),
        max_ms=waits[-1] / 1e6 if waits else float("nan"),
        statuses=run.statuses,
        errors=errors,
        transport_errors=run.transport_errors,
        samples=samples[:_SAMPLES],
        client_cpu=run.client_cpu,
    )


def _log_publish(console: Console, name: str, run: PublishRun, result: LoadResult) -> None:
    resolution, worst = _poll_resolution(run)
    console.log(
        f"Indelible over HTTP: {name}: {result.events_per_s:,.0f} events/s acknowledged; "
        f"ack → published p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms, "
        f"max {result.max_ms:.0f} ms over {len(run.acks):,} acks sampled of "
        f"{run.requests:,} requests; poll resolution "
        f"{resolution:.1f} ms (p99 {worst:.1f} ms, {len(run.polls):,} polls); "
        f"{len(run.notes)} checkpoints seen, signatures checked; client CPU {result.client_cpu:.0%}"
    )
    if result.errors:
        console.log(f"[bold red]{name}: {result.errors:,} ERRORS[/bold red]")
        for sample in result.samples:
            console.log(f"  {sample}", style="red", markup=False, highlight=False)


def _publish_specs(args: argparse.Namespace, server: _Server) -> list[tuple[str, PublishSpec]]:
    seconds, warmup = (2.0, 0.5) if args.quick else (10.0, 2.0)
    common = {"port": server.port, "api_key": server.api_key, "seconds": seconds}
    light = PublishSpec(**common, warmup=warmup, clients=1, batch=1, rate=_LIGHT_RATE, seed=5)
    load = PublishSpec(
        **common,
        warmup=warmup,
        clients=_LOAD_CLIENTS,
        batch=_LOAD_BATCH,
        sample_every=_SAMPLE_EVERY,
        seed=6,
    )
    return [
        (f"ack → published, 1 event at {_LIGHT_RATE:g}/s", light),
        (f"ack → published, {_LOAD_CLIENTS} clients x {_LOAD_BATCH}", load),
    ]


def publish_figures(args: argparse.Namespace, console: Console, data: Path) -> list[Figure]:
    """Both publish scenarios against one fresh server on ``data``, light first."""
    figures = []
    with _live_server(data) as server:
        console.log(f"publish latency: indelible run on port {server.port}; context: {PEERS}")
        for name, spec in _publish_specs(args, server):
            run = _publish_run(spec)
            result = _publish_result(spec, run, _verify_notes(server, run))
            _log_publish(console, name, run, result)
            passed = _clean(result) and result.p50_ms <= 1_000 and result.p99_ms <= 2_000
            figures.append(Figure(name, PUBLISH_GOAL, result, passed))
    _report_problems(console, server)
    return figures


# ---- proofs at 1M entries


def _checkpoint(server: _Server) -> tuple[Verifier, Checkpoint]:
    headers = server.headers()
    vkey = httpx.get(f"{server.base}/v1/vkey", headers=headers, timeout=30).text.strip()
    note = httpx.get(f"{server.base}/v1/checkpoint", headers=headers, timeout=30)
    note.raise_for_status()
    verifier = parse_vkey(vkey)
    checkpoint, _ = open_checkpoint(note.text, verifier)
    return verifier, checkpoint


def _signed_root(verifier: Verifier, document: dict[str, Any]) -> bytes:
    """The root of the signed checkpoint in ``document``, which must be of its tree size."""
    note = document.get("checkpoint")
    if note is None:
        raise ValueError("the answer carries no checkpoint")
    checkpoint, _ = open_checkpoint(note, verifier)
    size = document.get("tree_size", document.get("new_size"))
    if checkpoint.size != size:
        raise ValueError(f"checkpoint of size {checkpoint.size} for a proof at {size}")
    return checkpoint.root


def _check_inclusion(verifier: Verifier, path: str, body: bytes) -> None:
    document = json.loads(body)
    if f"seq={document['seq']}" not in path:
        raise ValueError(f"asked {path}, answered seq {document['seq']}")
    root = bytes.fromhex(document["root"])
    proof = [bytes.fromhex(node) for node in document["proof"]]
    leaf = bytes.fromhex(document["leaf_hash"])
    verify_inclusion(leaf, document["seq"], document["tree_size"], proof, root)
    if _signed_root(verifier, document) != root:
        raise ValueError("the proof's root is not its signed checkpoint's")


def _check_consistency(verifier: Verifier, path: str, body: bytes) -> None:
    document = json.loads(body)
    if f"old={document['old_size']}" not in path:
        raise ValueError(f"asked {path}, answered old size {document['old_size']}")
    new_root = bytes.fromhex(document["new_root"])
    proof = [bytes.fromhex(node) for node in document["proof"]]
    old, new = document["old_size"], document["new_size"]
    verify_consistency(old, new, bytes.fromhex(document["old_root"]), new_root, proof)
    if _signed_root(verifier, document) != new_root:
        raise ValueError("the proof's new root is not its signed checkpoint's")


def _check_tile(_: Verifier, path: str, body: bytes) -> None:
    if len(body) != TILE_WIDTH * 32:
        raise ValueError(f"{len(body)} bytes, not {TILE_WIDTH * 32}")


@dataclass(frozen=True, slots=True)
class _ProofKind:
    name: str
    paths: list[str]
    check: Callable[[Verifier, str, bytes], None]
    goal: str | None = PROOF_GOAL  # None: no goal set, no verdict


def _proof_kinds(args: argparse.Namespace, tenant: str, size: int) -> list[_ProofKind]:
    count = (200 if args.quick else 2_000) + _warmup(args)
    rng = random.Random(7)
    at = f"at {_rounded(size)}"
    inclusion = [f"/v1/proofs/inclusion?seq={rng.randrange(size)}" for _ in range(count)]
    consistency = [f"/v1/proofs/consistency?old={rng.randrange(1, size)}" for _ in range(count)]
    full = size // TILE_WIDTH
    tiles = [f"/tlog/{tenant}/{tile_path(0, rng.randrange(full))}" for _ in range(count)]
    return [
        _ProofKind(f"inclusion proof {at}", inclusion, _check_inclusion),
        _ProofKind(f"consistency proof {at}", consistency, _check_consistency),
        _ProofKind(f"level-0 hash tile {at}", tiles, _check_tile, None),
    ]


def _warmup(args: argparse.Namespace) -> int:
    return 20 if args.quick else 100


def _rounded(count: int) -> str:
    return f"{count / 1e6:.3g}M" if count >= 1_000_000 else f"{count / 1e3:.3g}k"


def _problems(verifier: Verifier, kind: _ProofKind, warmup: int, kept: dict[int, str]) -> list[str]:
    """Why the kept answers of ``kind`` are wrong ([] when each one checks out)."""
    problems = []
    for index, body in sorted(kept.items()):
        path = kind.paths[warmup + index]
        try:
            kind.check(verifier, path, base64.b64decode(body))
        except (IndelibleError, ValueError, KeyError) as exc:
            problems.append(f"{path}: does not verify: {exc}")
    return problems


def _proof_result(run: RequestsRun, problems: list[str]) -> LoadResult:
    ordered = sorted(run.latencies)
    return LoadResult(
        requests=len(ordered),
        events=0,
        seconds=run.seconds,
        events_per_s=0.0,
        requests_per_s=len(ordered) / max(run.seconds, 1e-9),
        p50_ms=_percentile(ordered, 0.50),
        p99_ms=_percentile(ordered, 0.99),
        max_ms=ordered[-1] / 1e6 if ordered else float("nan"),
        statuses=run.statuses,
        errors=run.errors + len(problems),
        transport_errors=run.transport_errors,
        samples=[*run.samples, *problems][:_SAMPLES],
        client_cpu=run.client_cpu,
    )


def _measure_kind(
    console: Console, server: _Server, verifier: Verifier, kind: _ProofKind, warmup: int
) -> Figure:
    timed = len(kind.paths) - warmup
    keep = tuple(range(0, timed, max(1, timed // _CHECKED)))
    spec = RequestsSpec(server.port, server.api_key, tuple(kind.paths), warmup, keep)
    document = _run_child("requests", spec, timeout=600)
    document["kept"] = {int(k): v for k, v in document["kept"].items()}
    run = RequestsRun(**document)
    problems = _problems(verifier, kind, warmup, run.kept)
    result = _proof_result(run, problems)
    _log_result(console, kind.name, result)
    console.log(f"{kind.name}: {len(run.kept) - len(problems)} of {len(run.kept)} answers checked")
    if kind.goal is None:
        return Figure(kind.name, "— (none set)", result)
    return Figure(kind.name, kind.goal, result, _clean(result) and result.p50_ms < 5)


def proof_figures(
    args: argparse.Namespace, console: Console, server: _Server, data: Path
) -> list[Figure]:
    """Inclusion and consistency proofs and hash tiles from ``server``, which serves the
    query figure's log on ``data``, against its final checkpoint."""
    tenant = load_settings({"data": str(data)}).log
    verifier, checkpoint = _checkpoint(server)
    console.log(f"proofs: final checkpoint at {checkpoint.size:,} entries, signature checked")
    warmup = _warmup(args)
    return [
        _measure_kind(console, server, verifier, kind, warmup)
        for kind in _proof_kinds(args, tenant, checkpoint.size)
    ]


# ---- ratio rows


def evidence_rows(publish: list[Figure], proofs: list[Figure]) -> list[Row]:
    """The headline numbers for the side-by-side table (no peer measured here)."""
    loaded, inclusion = publish[-1].result, proofs[0].result
    return [
        Row(
            "HTTP ack → published, under load: p99",
            "ms",
            TESSERA,
            None,
            None if loaded is None else loaded.p99_ms,
            False,
        ),
        Row(
            f"HTTP {proofs[0].name}: p50",
            "ms",
            "— (no peer)",
            None,
            None if inclusion is None else inclusion.p50_ms,
            False,
        ),
    ]


if __name__ == "__main__":
    main(sys.argv[1:])
