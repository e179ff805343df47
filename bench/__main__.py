"""``make bench``: Indelible side by side with its peers, in one run, on this machine.

Ingest and verify are compared against tamperlog and auditchain (SQLite backend), every
subject durable (fsync'd) on each call; proofs against pymerkle. Prints one table of ratios
(Indelible ÷ peer). ``python -m bench --quick`` runs small budgets for a smoke test.
HTTP figures against a live ``indelible run`` (``bench/http_bench.py``) follow, unless
``--no-http``; ``--http-only`` runs just those. The PostgreSQL store against the SQLite store
(``bench/pg_bench.py``) runs on the local server unless ``--no-pg``; ``--pg-only`` runs just
that. pg-capture's cost on a 10,000-row UPDATE (``bench/capture_bench.py``) runs there too,
unless ``--no-capture``; ``--capture-only`` runs just that. The web UI's page times over a
100,000-event log (``bench/ui_bench.py``) run unless ``--no-ui``; ``--ui-only`` runs just those.
Alerting (``bench/alerts_bench.py``: events/s evaluated with the billing pack, and
ack-to-webhook delivery delay) runs unless ``--no-alerts``; ``--alerts-only`` runs just that.
The SDK's capture integrations against SQLAlchemy-Continuum, django-auditlog and
django-simple-history (``bench/sdk_bench.py``) run unless ``--no-sdk``; ``--sdk-only`` runs
just those.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bench.alerts_bench import alert_rows
from bench.capture_bench import capture_rows
from bench.http_bench import http_rows
from bench.indelible_subjects import IndelibleIngestSubject, IndelibleProofSubject
from bench.measure import Row, build_and_prove, ingest_rate, print_table, settle_heap, verify_rate
from bench.peers import (
    AuditchainSqliteSubject,
    IngestSubject,
    PymerkleProofSubject,
    TamperlogSubject,
)
from bench.pg_bench import pg_rows
from bench.sdk_bench import sdk_rows
from bench.ui_bench import TITLE as UI_TITLE
from bench.ui_bench import ui_rows
from bench.workload import iter_event_bytes, make_events


def _ingest_rows(
    args: argparse.Namespace, console: Console, events: list, budget: float
) -> list[Row]:
    peers: list[IngestSubject] = [TamperlogSubject(), AuditchainSqliteSubject("wal")]
    ours = IndelibleIngestSubject()
    rows: list[Row] = []
    for call_size in (1, 100, 1000):
        mine = ingest_rate(ours, events, call_size, budget, workdir=args.workdir)
        console.log(f"Indelible: ingest, calls of {call_size}: {mine:,.0f} events/s")
        for peer in peers:
            theirs = ingest_rate(peer, events, call_size, budget, workdir=args.workdir)
            console.log(f"{peer.name}: ingest, calls of {call_size}: {theirs:,.0f} events/s")
            rows.append(
                Row(f"durable ingest, calls of {call_size}", "events/s", peer.name, theirs, mine)
            )
    count = args.verify_events
    mine = verify_rate(ours, events[:count], workdir=args.workdir)
    console.log(f"Indelible: full verify of {count:,}: {mine:,.0f} events/s")
    for peer in peers:
        theirs = verify_rate(peer, events[:count], workdir=args.workdir)
        console.log(f"{peer.name}: full verify of {count:,}: {theirs:,.0f} events/s")
        rows.append(Row(f"full verify ({count:,} entries)", "events/s", peer.name, theirs, mine))
    return rows


def _proof_rows(args: argparse.Namespace, console: Console) -> list[Row]:
    payloads = list(iter_event_bytes(args.leaves))
    settle_heap()
    results = {}
    for subject in (IndelibleProofSubject(), PymerkleProofSubject()):
        result = build_and_prove(subject, payloads, args.proofs, workdir=args.workdir)
        console.log(
            f"{subject.name}: {result.size:,} leaves built in {result.build_seconds:.1f}s; "
            f"median proof {result.prove_median_us:.0f} µs, verify {result.verify_median_us:.0f} µs"
        )
        results[subject.name] = result
    ours, theirs = results["Indelible"], results["pymerkle"]
    size = f"{ours.size:,}"
    return [
        Row(
            f"inclusion proof at {size}: generate",
            "µs",
            "pymerkle",
            theirs.prove_median_us,
            ours.prove_median_us,
            False,
        ),
        Row(
            f"inclusion proof at {size}: verify",
            "µs",
            "pymerkle",
            theirs.verify_median_us,
            ours.verify_median_us,
            False,
        ),
        Row(
            f"build a {size}-leaf tree",
            "s",
            "pymerkle (in memory, not durable)",
            theirs.build_seconds,
            ours.build_seconds,
            False,
        ),
    ]


@dataclass(frozen=True)
class Section:
    """A part of the run that needs only the arguments: ``--NAME``/``--no-NAME`` and
    ``--NAME-only`` (which prints just its table, under ``title``)."""

    name: str
    rows: Callable[[argparse.Namespace, Console], list[Row]]
    help: str
    title: str


SECTIONS = (
    Section(
        "capture",
        capture_rows,
        "pg-capture's cost on a 10,000-row UPDATE on the local server",
        "pg-capture: cost on the application's writes",
    ),
    Section(
        "http",
        http_rows,
        "HTTP figures against a live server",
        "Indelible over HTTP (same machine, same run)",
    ),
    Section("ui", ui_rows, "web UI page times over a 100,000-event log", UI_TITLE),
    Section(
        "alerts",
        alert_rows,
        "alert evaluation rate and delivery delay",
        "Alerting (same machine, same run)",
    ),
    Section(
        "sdk",
        sdk_rows,
        "the SDK's capture integrations vs their peers",
        "SDK capture: time added per commit",
    ),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small budgets and trees")
    parser.add_argument("--budget", type=float, default=None, help="seconds per ingest run")
    parser.add_argument("--verify-events", type=int, default=None)
    parser.add_argument("--leaves", type=int, default=None, help="tree size for proofs")
    parser.add_argument("--proofs", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None, help="a directory on a real disk")
    parser.add_argument("--skip-proofs", action="store_true")
    parser.add_argument(
        "--pg",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="PostgreSQL store vs SQLite store on the local server (default: on)",
    )
    parser.add_argument("--pg-only", action="store_true", help="only the PostgreSQL figures")
    for section in SECTIONS:
        parser.add_argument(
            f"--{section.name}",
            action=argparse.BooleanOptionalAction,
            default=True,
            help=f"{section.help} (default: on)",
        )
        parser.add_argument(
            f"--{section.name}-only", action="store_true", help=f"only the {section.name} figures"
        )
    parser.add_argument("--ui-requests", type=int, default=50, help="requests per UI page")
    args = parser.parse_args()
    budget = args.budget or (1.0 if args.quick else 4.0)
    args.verify_events = args.verify_events or (10_000 if args.quick else 200_000)
    args.leaves = args.leaves or (50_000 if args.quick else 1_000_000)

    console = Console()
    started = time.perf_counter()
    for section in SECTIONS:
        if getattr(args, f"{section.name}_only"):
            print_table(section.rows(args, console), title=section.title)
            console.log(f"total {time.perf_counter() - started:.0f}s")
            return
    events = make_events(max(args.verify_events, 150_000 if not args.quick else 30_000))
    console.log(f"{len(events):,} events generated in {time.perf_counter() - started:.1f}s")
    settle_heap()
    if args.pg_only:
        print_table(pg_rows(args, console, events), title="PostgreSQL store vs SQLite store")
        console.log(f"total {time.perf_counter() - started:.0f}s")
        return
    rows = _ingest_rows(args, console, events, budget)
    if args.pg:
        rows += pg_rows(args, console, events)
    del events
    if not args.skip_proofs:
        rows += _proof_rows(args, console)
    for section in SECTIONS:
        if getattr(args, section.name):
            rows += section.rows(args, console)
    print_table(rows, title="Indelible vs peers (same machine, same run)")
    console.log(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
