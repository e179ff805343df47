"""Timing helpers for ``make bench``, generic over ``bench.peers`` subjects.

Indelible is measured exactly like the peers: wrap it in an ``IngestSubject`` /
``ProofSubject`` and pass it to the same functions, then put the numbers side by side
with :func:`print_table`.
"""

from __future__ import annotations

import gc
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.peers import Event, IngestSubject, ProofSubject

__all__ = [
    "ProofResult",
    "Row",
    "build_and_prove",
    "fresh_directory",
    "ingest_rate",
    "median_us",
    "print_table",
    "proof_medians",
    "settle_heap",
    "verify_rate",
]


def settle_heap() -> None:
    """Collect, then freeze everything alive (the generated workload above all).

    Call once after building the events and before measuring: a few hundred thousand event
    dicts would otherwise be rescanned by every full GC pass, slowing whichever subject
    happens to trigger those passes for objects it did not create.
    """
    gc.collect()
    gc.freeze()
    # the same thresholds `indelible` sets as a process, applied to every subject alike
    gc.set_threshold(100_000, 50, 100)


@contextmanager
def fresh_directory(parent: Path | None = None, prefix: str = "bench-") -> Iterator[Path]:
    """A new empty directory under ``parent`` (default: the system temp dir), removed after.

    fsync only means something on a real disk: point ``parent`` away from any tmpfs.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ingest_rate(
    subject: IngestSubject,
    events: Sequence[Event],
    call_size: int,
    seconds_budget: float,
    *,
    workdir: Path | None = None,
    warmup_calls: int = 1,
) -> float:
    """Durable ingest throughput, in events per second, for calls of ``call_size`` events.

    Opens ``subject`` on a fresh directory, makes ``warmup_calls`` untimed calls, then
    appends consecutive slices of ``events`` until ``seconds_budget`` of timed append
    time has been spent or ``events`` runs out. Only whole ``append`` calls are timed
    (wall clock, each call from entry to durable return), so a call of N events costs
    whatever the subject's N-event path costs. Every event is appended at most once.
    """
    if call_size < 1:
        raise ValueError("call_size must be at least 1")
    if len(events) < (warmup_calls + 1) * call_size:
        raise ValueError(
            f"{len(events)} events cannot fill {warmup_calls} warm-up and one timed call "
            f"of {call_size}"
        )
    with fresh_directory(workdir, prefix=f"ingest-{call_size}-") as directory:
        subject.open(directory)
        try:
            offset = 0
            for _ in range(warmup_calls):
                subject.append(events[offset : offset + call_size])
                offset += call_size
            done = 0
            spent = 0.0
            clock = time.perf_counter
            while spent < seconds_budget and offset + call_size <= len(events):
                batch = events[offset : offset + call_size]
                started = clock()
                subject.append(batch)
                spent += clock() - started
                offset += call_size
                done += call_size
        finally:
            subject.close()
    return done / spent


def verify_rate(
    subject: IngestSubject,
    events: Sequence[Event],
    *,
    call_size: int = 1000,
    workdir: Path | None = None,
) -> float:
    """Full-verification throughput, in events per second, over a log of ``events``.

    Untimed: open on a fresh directory, append all ``events`` in calls of ``call_size``,
    ``checkpoint()``. Timed: one ``verify_all()``, which must report every event checked.
    """
    with fresh_directory(workdir, prefix="verify-") as directory:
        subject.open(directory)
        try:
            for offset in range(0, len(events), call_size):
                subject.append(events[offset : offset + call_size])
            subject.checkpoint()
            started = time.perf_counter()
            checked = subject.verify_all()
            spent = time.perf_counter() - started
        finally:
            subject.close()
    if checked != len(events):
        raise RuntimeError(f"{subject.name}: verified {checked} of {len(events)} entries")
    return checked / spent


def median_us(fn: Callable[[], object], n: int, *, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` over ``n`` calls (after ``warmup`` untimed ones), in µs."""
    if n < 1:
        raise ValueError("n must be at least 1")
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    samples: list[int] = []
    for _ in range(n):
        started = clock()
        fn()
        samples.append(clock() - started)
    return statistics.median(samples) / 1000


@dataclass(frozen=True, slots=True)
class ProofResult:
    size: int
    build_seconds: float
    prove_median_us: float
    verify_median_us: float


def proof_medians(
    subject: ProofSubject, size: int, n: int, *, seed: int = 0
) -> tuple[float, float]:
    """Median µs to generate, and to verify, an inclusion proof for ``n`` random leaves.

    Leaf indices are drawn uniformly from ``[0, size)`` with ``seed``, the same for every
    subject. Generation and verification are timed separately, per proof.
    """
    rng = random.Random(seed)
    clock = time.perf_counter_ns
    prove_ns: list[int] = []
    verify_ns: list[int] = []
    for _ in range(n):
        index = rng.randrange(size)
        started = clock()
        proof = subject.prove(index)
        proved = clock()
        subject.verify(index, proof)
        verified = clock()
        prove_ns.append(proved - started)
        verify_ns.append(verified - proved)
    return statistics.median(prove_ns) / 1000, statistics.median(verify_ns) / 1000


def build_and_prove(
    subject: ProofSubject,
    payloads: Iterable[bytes],
    n: int,
    *,
    seed: int = 0,
    workdir: Path | None = None,
) -> ProofResult:
    """Build ``subject``'s tree over ``payloads`` (timed on its own), then :func:`proof_medians`.

    Pass ``payloads`` as a list so that producing them is not part of the build time.
    """
    with fresh_directory(workdir, prefix="proofs-") as directory:
        started = time.perf_counter()
        size = subject.build(directory, payloads)
        build_seconds = time.perf_counter() - started
        try:
            prove_us, verify_us = proof_medians(subject, size, n, seed=seed)
        finally:
            subject.close()
    return ProofResult(size, build_seconds, prove_us, verify_us)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the side-by-side table: one metric, Indelible against one peer.

    ``indelible`` may be ``None`` (not measured): the ratio is then left blank.
    """

    metric: str
    unit: str
    peer: str
    peer_value: float | None
    indelible: float | None
    higher_is_better: bool = True


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def _ratio(row: Row) -> str:
    if row.indelible is None or row.peer_value is None or row.peer_value == 0:
        return "—"
    ratio = row.indelible / row.peer_value
    better = ratio >= 1 if row.higher_is_better else ratio <= 1
    colour = "green" if better else "red"
    return f"[{colour}]{ratio:,.2f}x[/{colour}]"


def print_table(
    rows: Sequence[Row], *, title: str = "Indelible vs peers", console: Console | None = None
) -> None:
    """Print ``rows`` side by side with an "Indelible ÷ peer" column.

    The ratio is Indelible's value divided by the peer's, for rates and times alike; it is
    green where Indelible is better (above 1 for rates, below 1 for times), red otherwise.
    """
    table = Table(title=title, caption="ratio = Indelible ÷ peer; green = Indelible better")
    table.add_column("metric", no_wrap=True)
    table.add_column("unit")
    table.add_column("Indelible", justify="right")
    table.add_column("peer", no_wrap=True)
    table.add_column("peer value", justify="right")
    table.add_column("Indelible ÷ peer", justify="right")
    for row in rows:
        table.add_row(
            row.metric,
            row.unit,
            _fmt(row.indelible),
            row.peer,
            _fmt(row.peer_value),
            _ratio(row),
        )
    if console is None:
        console = Console()
        if not console.is_terminal and console.width < 120:
            console = Console(width=120)  # piped to a file or CI log: do not wrap the table
    console.print(table)
