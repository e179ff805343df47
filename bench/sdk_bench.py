"""The SDK's capture integrations: time added to an application's commit of one changed row.

Side by side in one run, on the same table and the same operation: load one row by key,
change two fields, commit (SQLAlchemy: ``session.get`` + set + ``commit``; Django:
``transaction.atomic()`` + ``objects.get`` + set + ``save``), timed from start to the commit's
return, in the application's thread:

- SQLAlchemy **plain** / **+ Indelible** (``SQLAlchemyCapture``: the event into
  ``indelible_outbox`` in the same transaction, the relay thread running and moving rows into
  a real client outbox) / **+ Indelible, client mode** (``transactional=False``: one fsync'd
  client commit after each commit, the design not taken) / **+ SQLAlchemy-Continuum**;
- Django **plain** / **+ Indelible** (``DjangoCapture``, relay running; the old values read
  from the row) / **+ Indelible, before="loaded"** (the values the instance was loaded with:
  no ``SELECT``) / **+ django-auditlog** / **+ django-simple-history**.

Every subject records every column but the key (Indelible: all five in the allowlist). The
databases: a SQLite file in WAL mode with ``synchronous=FULL`` (every commit fsync'd), the
same with ``synchronous=NORMAL`` (no fsync per commit: the CPU cost shows without the disk's
noise) and, unless ``--no-pg``, PostgreSQL (a database of its own per subject on
``INDELIBLE_BENCH_PG`` or 127.0.0.1:5432). Each subject runs in a process of its own (Django is
configured once per process, and Continuum hooks mappers globally), in rounds that alternate
the subjects; the figures are the median and p99 of the wall time over all rounds, and the
median CPU time of the application's thread (``time.thread_time``: what the integration costs
that thread, background threads excluded). "Added" is the subject's figure minus plain's. The
Indelible subjects check at the end that the client's outbox holds exactly one event per
commit. The load average is printed at both ends: on a busy machine every figure grows. Goal:
≤ 100 µs median added per audited change, below every peer.

``python -m bench --sdk-only`` runs just this; ``python -m bench.sdk_bench --quick`` too.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.measure import Row

__all__ = ["sdk_rows"]

ADMIN = os.environ.get("INDELIBLE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
GOAL_US = 100.0
ROWS = 1_000
FIELDS = ("customer", "status", "amount_cents", "currency", "notes")
SUBJECTS = {
    "sqlalchemy": ("plain", "indelible", "indelible-client", "continuum"),
    "django": ("plain", "indelible", "indelible-loaded", "auditlog", "simple-history"),
}
_FRAMEWORK = {"sqlalchemy": "SQLAlchemy", "django": "Django"}
PEER_NAMES = {
    "continuum": "SQLAlchemy-Continuum",
    "auditlog": "django-auditlog",
    "simple-history": "django-simple-history",
    "indelible-client": "Indelible, client mode",
    "indelible-loaded": 'Indelible, before="loaded"',
}


# -- the workers (one subject, one process) --------------------------------------------------


def _timed(operation: Callable[[int], None], warmup: int, n: int) -> dict[str, list[int]]:
    """Wall and application-thread CPU time of each operation, ns."""
    for i in range(warmup):
        operation(i)
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    samples: dict[str, list[int]] = {"wall": [], "cpu": []}
    for i in range(warmup, warmup + n):
        started, used = wall(), cpu()
        operation(i)
        samples["cpu"].append(cpu() - used)
        samples["wall"].append(wall() - started)
    return samples


def _client(directory: Path) -> Any:
    from indelible.sdk import Client

    return Client(
        None,
        outbox=directory / "client-outbox.sqlite3",
        default_actor={"id": "sdk-bench", "type": "service"},
    )


def _check_recorded(client: Any, expected: int) -> None:
    pending = client.pending()
    client.close()
    if pending != expected:
        raise RuntimeError(f"the client's outbox holds {pending} events, not {expected}")


def _sqlalchemy_worker(
    kind: str, url: str, directory: Path, warmup: int, n: int
) -> dict[str, list[int]]:
    import sqlalchemy as sa
    from sqlalchemy import event
    from sqlalchemy.orm import DeclarativeBase, sessionmaker

    if kind == "continuum":
        from sqlalchemy_continuum import make_versioned

        make_versioned(user_cls=None)

    class Base(DeclarativeBase):
        pass

    class Invoice(Base):
        __tablename__ = "invoices"
        if kind == "continuum":
            __versioned__: dict[str, Any] = {}
        id = sa.Column(sa.Integer, primary_key=True)
        customer = sa.Column(sa.String(40), nullable=False)
        status = sa.Column(sa.String(20), nullable=False)
        amount_cents = sa.Column(sa.BigInteger, nullable=False)
        currency = sa.Column(sa.String(3), nullable=False)
        notes = sa.Column(sa.Text, nullable=False)

    sa.orm.configure_mappers()
    engine = sa.create_engine(url)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={_sqlite_sync()}")
            cursor.close()

    capture = client = None
    if kind.startswith("indelible"):
        from indelible.sdk.integrations.sqlalchemy import SQLAlchemyCapture, outbox_table

        outbox_table(Base.metadata)
        client = _client(directory)
        capture = SQLAlchemyCapture(client, transactional=kind == "indelible")
        capture.track(Invoice, fields=FIELDS)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Invoice),
            [
                {
                    "id": i,
                    "customer": f"cust-{i % 97}",
                    "status": "open",
                    "amount_cents": i,
                    "currency": "EUR",
                    "notes": f"note {i}",
                }
                for i in range(ROWS)
            ],
        )
    factory = sessionmaker(engine)
    if capture is not None:
        capture.install(factory)
        if kind == "indelible":
            capture.start_relay(engine)
    statuses = ("open", "sent", "paid", "void")

    def operation(i: int) -> None:
        with factory() as session:
            invoice = session.get(Invoice, i % ROWS)
            assert invoice is not None
            invoice.status = statuses[i % 4]
            invoice.amount_cents += 1
            session.commit()

    if client is None:
        return _timed(operation, warmup, n)
    from indelible.sdk import context

    with context(actor={"id": "u-1", "type": "user"}, request_id="bench"):
        samples = _timed(operation, warmup, n)
    assert capture is not None
    capture.close()
    _check_recorded(client, warmup + n)
    engine.dispose()
    return samples


def _django_worker(
    kind: str, url: str, directory: Path, warmup: int, n: int
) -> dict[str, list[int]]:
    import django
    from django.conf import settings

    apps = ["django.contrib.contenttypes", "django.contrib.auth", "bench.sdk_django_app"]
    apps += {
        "indelible": ["indelible.sdk.integrations.django_outbox"],
        "indelible-loaded": ["indelible.sdk.integrations.django_outbox"],
        "auditlog": ["auditlog"],
        "simple-history": ["simple_history"],
    }.get(kind, [])
    settings.configure(
        INSTALLED_APPS=apps,
        DATABASES={"default": _django_database(url)},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from bench.sdk_django_app.models import Invoice

    capture = client = None
    if kind == "auditlog":
        from auditlog.registry import auditlog

        auditlog.register(Invoice)
    elif kind == "simple-history":
        from simple_history import register

        register(Invoice)
    elif kind.startswith("indelible"):
        from indelible.sdk.integrations.django import DjangoCapture

        client = _client(directory)
        capture = DjangoCapture(
            client, before="loaded" if kind == "indelible-loaded" else "database"
        )
        capture.track(Invoice, fields=FIELDS)
    call_command("migrate", "auth", verbosity=0)  # first: the history model refers to users
    call_command("migrate", run_syncdb=True, verbosity=0)
    Invoice.objects.bulk_create(
        Invoice(
            id=i,
            customer=f"cust-{i % 97}",
            status="open",
            amount_cents=i,
            currency="EUR",
            notes=f"note {i}",
        )
        for i in range(ROWS)
    )
    if capture is not None:
        capture.start_relay()
    statuses = ("open", "sent", "paid", "void")

    def operation(i: int) -> None:
        with transaction.atomic():
            invoice = Invoice.objects.get(pk=i % ROWS)
            invoice.status = statuses[i % 4]
            invoice.amount_cents += 1
            invoice.save()

    if client is None:
        samples = _timed(operation, warmup, n)
    else:
        from indelible.sdk import context

        with context(actor={"id": "u-1", "type": "user"}, request_id="bench"):
            samples = _timed(operation, warmup, n)
        assert capture is not None
        capture.close()
        _check_recorded(client, warmup + n)
    connection.close()
    return samples


def _sqlite_sync() -> str:
    return os.environ.get("INDELIBLE_BENCH_SQLITE_SYNC", "FULL")


def _django_database(url: str) -> dict[str, Any]:
    if url.startswith("sqlite:///"):
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": url[len("sqlite:///") :],
            # IMMEDIATE: Django's advice for SQLite with more than one writer (each subject's
            # own background writer, if any, would otherwise fail a deferred transaction)
            "OPTIONS": {
                "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={_sqlite_sync()};",
                "transaction_mode": "IMMEDIATE",
            },
        }
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(url.replace("postgresql+psycopg", "postgresql"))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": info["dbname"],
        "USER": info.get("user", "postgres"),
        "HOST": info.get("host", "127.0.0.1"),
        "PORT": str(info.get("port", 5432)),
    }


def _worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("framework", choices=sorted(SUBJECTS))
    parser.add_argument("kind")
    parser.add_argument("url")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("-n", type=int, default=1000)
    args = parser.parse_args(argv)
    run = _sqlalchemy_worker if args.framework == "sqlalchemy" else _django_worker
    samples = run(args.kind, args.url, args.directory, args.warmup, args.n)
    print(json.dumps(samples))


# -- the parent: rounds of subprocesses, then the table --------------------------------------


class _Databases:
    """A fresh database per worker run: a SQLite file, or a PostgreSQL database dropped after."""

    def __init__(self, engine: str, parent: Path) -> None:
        self.engine, self.parent = engine, parent
        self._made: list[str] = []

    def url(self) -> str:
        tag = secrets.token_hex(4)
        if self.engine == "sqlite":
            return f"sqlite:///{self.parent / f'app-{tag}.sqlite3'}"
        import psycopg
        from psycopg import sql

        name = f"indelible_sdk_bench_{tag}"
        with psycopg.connect(ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._made.append(name)
        info = psycopg.conninfo.conninfo_to_dict(ADMIN)
        user, host, port = (
            info.get("user", "postgres"),
            info.get("host", "127.0.0.1"),
            info.get("port", 5432),
        )
        return f"postgresql+psycopg://{user}@{host}:{port}/{name}"

    def drop(self) -> None:
        if not self._made:
            return
        import psycopg
        from psycopg import sql

        with psycopg.connect(ADMIN, autocommit=True) as conn:
            for name in self._made:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self._made.clear()


def _pg_available(console: Console) -> bool:
    try:
        import psycopg

        with psycopg.connect(ADMIN, connect_timeout=3):
            return True
    except Exception as exc:
        console.log(f"[red]SDK bench on PostgreSQL skipped: no server at {ADMIN}: {exc}")
        return False


def _run_subject(
    framework: str, kind: str, databases: _Databases, parent: Path, warmup: int, n: int
) -> dict[str, list[int]]:
    directory = Path(tempfile.mkdtemp(prefix=f"sdk-{kind}-", dir=parent))
    command = [sys.executable, "-m", "bench.sdk_bench", "--worker", framework, kind,
               databases.url(), str(directory), "--warmup", str(warmup), "-n", str(n)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{framework} {kind} failed:\n{done.stderr}")
    found: dict[str, list[int]] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@dataclass(frozen=True)
class Figures:
    """One subject's figures over all rounds, µs."""

    median: float
    p99: float
    cpu_median: float

    @classmethod
    def of(cls, samples: dict[str, list[int]]) -> Figures:
        wall = sorted(samples["wall"])
        return cls(
            statistics.median(wall) / 1000,
            wall[min(len(wall) - 1, int(len(wall) * 0.99))] / 1000,
            statistics.median(samples["cpu"]) / 1000,
        )


Results = dict[str, dict[str, Figures]]  # framework -> subject -> figures


def _measure(engine: str, args: argparse.Namespace, console: Console, parent: Path) -> Results:
    databases = _Databases(engine, parent)
    results: Results = {}
    try:
        for framework, kinds in SUBJECTS.items():
            samples: dict[str, dict[str, list[int]]] = {
                kind: {"wall": [], "cpu": []} for kind in kinds
            }
            for round_ in range(args.sdk_rounds):
                order = kinds[round_ % len(kinds) :] + kinds[: round_ % len(kinds)]
                for kind in order:
                    found = _run_subject(
                        framework, kind, databases, parent, args.sdk_warmup, args.sdk_commits
                    )
                    for name, values in found.items():
                        samples[kind][name] += values
            results[framework] = {kind: Figures.of(found) for kind, found in samples.items()}
            for kind, figures in results[framework].items():
                console.log(
                    f"{framework} {kind} on {engine}: median {figures.median:.0f} µs, "
                    f"p99 {figures.p99:.0f} µs, app-thread CPU {figures.cpu_median:.0f} µs"
                )
    finally:
        databases.drop()
    return results


def _detail(engine: str, results: Results) -> Table:
    table = Table(
        title=f"SDK capture: load a row, change two fields, commit — {engine}",
        caption="added = subject - plain; CPU = the application thread's CPU time",
    )
    columns = ("framework", "subject", "median µs", "p99 µs", "CPU µs", "added median µs",
               "added p99 µs", "added CPU µs", "Indelible added ÷ subject added")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("framework", "subject") else "right")
    for framework, by_kind in results.items():
        plain = by_kind["plain"]
        ours = by_kind["indelible"].median - plain.median
        for kind, figures in by_kind.items():
            added = figures.median - plain.median
            ratio = (
                f"{ours / added:.2f}x" if kind not in ("plain", "indelible") and added > 0 else ""
            )
            extra = (
                ["", "", ""]
                if kind == "plain"
                else [
                    f"{added:,.0f}",
                    f"{figures.p99 - plain.p99:,.0f}",
                    f"{figures.cpu_median - plain.cpu_median:,.0f}",
                ]
            )
            table.add_row(
                framework, PEER_NAMES.get(kind, kind), f"{figures.median:,.0f}",
                f"{figures.p99:,.0f}", f"{figures.cpu_median:,.0f}", *extra, ratio,
            )  # fmt: skip
    return table


def _engines(args: argparse.Namespace, console: Console) -> list[tuple[str, str]]:
    """(label, engine) pairs: SQLite with synchronous FULL, then NORMAL, then PostgreSQL."""
    engines = [("SQLite sync=FULL", "sqlite"), ("SQLite sync=NORMAL", "sqlite")]
    if getattr(args, "pg", True) and _pg_available(console):
        engines.append(("PostgreSQL", "postgresql"))
    return engines


def sdk_rows(args: argparse.Namespace, console: Console) -> list[Row]:
    """Rows of the side-by-side table: Indelible's added µs per commit ÷ each peer's."""
    args.sdk_rounds = getattr(args, "sdk_rounds", None) or (2 if args.quick else 4)
    args.sdk_commits = getattr(args, "sdk_commits", None) or (300 if args.quick else 1000)
    args.sdk_warmup = 100 if args.quick else 300
    rows: list[Row] = []
    console.log(f"SDK bench: load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory(prefix="sdk-bench-", dir=args.workdir) as parent:
        for label, engine in _engines(args, console):
            os.environ["INDELIBLE_BENCH_SQLITE_SYNC"] = (
                label.split("=")[-1] if "=" in label else "FULL"
            )
            results = _measure(engine, args, console, Path(parent))
            wide = console if console.is_terminal else Console(width=max(console.width, 160))
            wide.print(_detail(label, results))
            rows += _rows(label, results, console)
    console.log(f"SDK bench: load average {os.getloadavg()[0]:.1f} at the end")
    return rows


def _rows(label: str, results: Results, console: Console) -> list[Row]:
    """Each Indelible variant (the default; for Django also ``before="loaded"``) against each
    peer (and, for SQLAlchemy, against client mode, the design not taken)."""
    rows = []
    for framework, by_kind in results.items():
        plain = by_kind["plain"]
        for variant in ("indelible", "indelible-loaded"):
            ours = by_kind.get(variant)
            if ours is None:
                continue
            added = ours.median - plain.median
            added_p99, added_cpu = ours.p99 - plain.p99, ours.cpu_median - plain.cpu_median
            verdict = "PASS" if added <= GOAL_US else "MISS"
            console.log(f"{framework} {variant}, {label}: adds {added:.0f} µs median wall, "
                        f"{added_cpu:.0f} µs CPU (goal ≤ {GOAL_US:.0f} µs): {verdict}")  # fmt: skip
            suffix = "" if variant == "indelible" else ', before="loaded"'
            metric = f"{_FRAMEWORK[framework]}{suffix}, {label}: added"
            for kind, theirs in by_kind.items():
                if kind in ("plain", "indelible", "indelible-loaded"):
                    continue
                name = PEER_NAMES[kind]
                rows += [
                    Row(f"{metric} median", "µs", name, theirs.median - plain.median, added, False),
                    Row(f"{metric} p99", "µs", name, theirs.p99 - plain.p99, added_p99, False),
                    Row(
                        f"{metric} CPU",
                        "µs",
                        name,
                        theirs.cpu_median - plain.cpu_median,
                        added_cpu,
                        False,
                    ),
                ]
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2:])
        return
    from bench.measure import print_table

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer commits and rounds")
    parser.add_argument("--pg", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--workdir", type=Path, default=None, help="a directory on a real disk")
    parser.add_argument("--sdk-rounds", type=int, default=None)
    parser.add_argument("--sdk-commits", type=int, default=None)
    args = parser.parse_args()
    console = Console()
    print_table(sdk_rows(args, console), title="SDK capture: time added per commit")


if __name__ == "__main__":
    main()
