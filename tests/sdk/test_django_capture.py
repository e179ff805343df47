"""The Django integration on real SQLite and PostgreSQL, delivering to a real server.

Django is configured in this process once (``settings.configure`` + ``django.setup``) with
two databases: ``default``, a SQLite file, and ``pg``, a throwaway PostgreSQL database (when
there is a server; the PostgreSQL tests skip loudly without one, and fail under CI=true). Both
are migrated, the outbox app included. Each test tracks the models with a target type of its
own and records under a request_id of its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import django
import pytest

from indelible.sdk import Client, context
from indelible.sdk.integrations.changes import MASK
from tests import pg
from tests.sdk.capture_helpers import USER, logged, new_client, request_id, state
from tests.sdk.live import LiveServer


@dataclass
class Databases:
    aliases: list[str]
    pg_missing: str | None


@pytest.fixture(scope="session")
def django_databases(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Databases]:
    from django.conf import settings

    with contextlib.ExitStack() as stack:
        databases: dict[str, Any] = {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(tmp_path_factory.mktemp("django") / "app.sqlite3"),
                # the relay deletes from another thread: see docs/sdk.md on SQLite
                "OPTIONS": {"transaction_mode": "IMMEDIATE"},
            }
        }
        missing = None
        try:
            server: pg.Server = request.getfixturevalue("pg_server")
        except pytest.skip.Exception as exc:
            missing = str(exc)
        else:
            db = stack.enter_context(pg.database(server))
            databases["pg"] = {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": db.name,
                "USER": server.user,
                "HOST": server.host,
                "PORT": str(server.port),
            }
        if settings.configured:
            pytest.fail("Django was configured elsewhere in this process")
        settings.configure(
            INSTALLED_APPS=[
                "indelible.sdk.integrations.django_outbox",
                "tests.sdk.django_capture_app",
            ],
            DATABASES=databases,
            USE_TZ=True,
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        )
        django.setup()
        from django.core.management import call_command
        from django.db import connections

        for alias in databases:
            call_command("migrate", run_syncdb=True, database=alias, verbosity=0)
        try:
            yield Databases(list(databases), missing)
        finally:
            connections.close_all()


@pytest.fixture(params=["default", "pg"], ids=["sqlite", "postgresql"])
def using(request: pytest.FixtureRequest, django_databases: Databases) -> str:
    if request.param not in django_databases.aliases:
        pg.unavailable(django_databases.pg_missing or "no PostgreSQL database")
    return str(request.param)


@dataclass
class App:
    using: str
    capture: Any
    client: Client
    live: LiveServer
    kind: str
    request: str

    def events(self, count: int) -> list[dict[str, Any]]:
        relay = self.capture.relays[self.using]
        return logged(self.live, self.client, self.request, relay.drain, count)

    def outbox_rows(self) -> int:
        from django.db import connections

        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM indelible_outbox")
            return int(cursor.fetchone()[0])


@pytest.fixture
def app(using: str, live: LiveServer, tmp_path: Path) -> Iterator[App]:
    from django.db import connections

    from indelible.sdk.integrations.django import DjangoCapture
    from tests.sdk.django_capture_app.models import Invoice

    client = new_client(live, tmp_path)
    capture = DjangoCapture(client)
    kind = f"inv_{uuid.uuid4().hex[:8]}"
    capture.track(
        Invoice,
        fields=["customer", "status", "amount", "due_on", "code"],
        masked=["iban"],
        target_type=kind,
    )
    capture.start_relay(using, poll_interval=0.1)
    try:
        yield App(using, capture, client, live, kind, request_id())
    finally:
        capture.untrack(Invoice)
        capture.close()
        client.close()
        connections[using].close()


def test_create_update_delete_record_before_and_after_field_by_field(app: App) -> None:
    from django.db import transaction

    from tests.sdk.django_capture_app.models import Customer, Invoice

    objects = Invoice.objects.using(app.using)
    who = context(actor=USER, request_id=app.request, ip="203.0.113.7", reason="customer asked")
    with who:
        customer = Customer.objects.using(app.using).create(name="ACME")
        with transaction.atomic(using=app.using):
            invoice = objects.create(
                customer=customer, status="open", amount=Decimal("120.50"),
                due_on=dt.date(2026, 12, 31), iban="DE89370400440532013000",
                notes="secret note", code=f"A-{app.kind}",
            )  # fmt: skip
        with transaction.atomic(using=app.using):
            invoice.status, invoice.amount, invoice.notes = "void", Decimal("0"), "x"
            invoice.save(using=app.using)
        invoice.notes = "only an unlisted field"
        invoice.save(using=app.using)
        invoice.iban = "FR7630006000011234567890189"
        invoice.save(using=app.using)
        key = invoice.pk
        with transaction.atomic(using=app.using):
            invoice.delete(using=app.using)
    created, updated, masked, deleted = app.events(4)
    target = {"type": app.kind, "id": str(key)}
    assert (created["event_type"], created["action"], created["outcome"], created["target"]) == (
        f"{app.kind}.created", "create", "success", target,
    )  # fmt: skip
    assert created["changes"] == [
        {"field": "customer", "after": customer.pk},
        {"field": "status", "after": "open"},
        {"field": "amount", "after": "120.50"},
        {"field": "due_on", "after": "2026-12-31"},
        {"field": "code", "after": f"A-{app.kind}"},
        {"field": "iban", "after": MASK},
    ]
    assert created["actor"] == USER
    assert created["reason"] == "customer asked"
    assert created["context"] == {"ip": "203.0.113.7", "request_id": app.request, "source": "app"}
    assert (updated["event_type"], updated["target"]) == (f"{app.kind}.updated", target)
    assert updated["changes"] == [
        {"field": "status", "before": "open", "after": "void"},
        {"field": "amount", "before": "120.50", "after": "0.00"},
    ]
    assert masked["changes"] == [{"field": "iban", "before": MASK, "after": MASK}]
    assert (deleted["event_type"], deleted["action"]) == (f"{app.kind}.deleted", "delete")
    assert deleted["changes"] == [
        {"field": "customer", "before": customer.pk},
        {"field": "status", "before": "void"},
        {"field": "amount", "before": "0.00"},
        {"field": "due_on", "before": "2026-12-31"},
        {"field": "code", "before": f"A-{app.kind}"},
        {"field": "iban", "before": MASK},
    ]
    text = str([created, updated, masked, deleted])
    assert "secret" not in text and "DE89" not in text and "FR76" not in text
    assert app.outbox_rows() == 0
    replayed = state(app.live, app.kind, str(key))
    assert (replayed["exists"], replayed["complete"], replayed["gaps"]) == (False, True, [])


def test_before_is_what_the_row_held_whatever_the_instance_loaded(app: App) -> None:
    from django.db import transaction

    from tests.sdk.django_capture_app.models import Invoice

    objects = Invoice.objects.using(app.using)
    with context(actor=USER, request_id=app.request):
        made = objects.create(status="open", amount=Decimal("10.00"), code=f"E-{app.kind}")
        partial = objects.only("id").get(pk=made.pk)  # every recorded field deferred
        partial.status = "sent"
        partial.save(using=app.using)
        stale = objects.get(pk=made.pk)
        objects.filter(pk=made.pk).update(amount=Decimal("12.00"))  # behind its back
        with transaction.atomic(using=app.using):
            stale.amount = Decimal("11.00")
            stale.save(using=app.using, update_fields=["amount"])
        stale.status = "paid"
        stale.save(using=app.using, update_fields=["status"])
    created, sent, amount, paid = app.events(4)
    assert created["action"] == "create"
    assert sent["changes"] == [{"field": "status", "before": "open", "after": "sent"}]
    assert amount["changes"] == [{"field": "amount", "before": "12.00", "after": "11.00"}]
    assert paid["changes"] == [{"field": "status", "before": "sent", "after": "paid"}]


def test_rollbacks_and_updates_of_no_allowed_field_record_nothing(app: App) -> None:
    from django.db import transaction

    from tests.sdk.django_capture_app.models import Invoice

    objects = Invoice.objects.using(app.using)
    with context(actor=USER, request_id=app.request):
        invoice = objects.create(status="open", amount=Decimal("5.00"))
        invoice.notes, invoice.amount = "b", Decimal("5.0")  # the same number
        invoice.save(using=app.using)
        with pytest.raises(RuntimeError), transaction.atomic(using=app.using):
            invoice.status = "void"
            invoice.save(using=app.using)
            objects.create(status="draft", amount=Decimal("1.00"))
            assert app.outbox_rows() >= 2  # inside the transaction: written, not committed
            raise RuntimeError("the request failed")
    (only,) = app.events(1)
    assert only["action"] == "create"
    assert app.outbox_rows() == 0
    assert list(objects.values_list("status", flat=True).filter(pk=invoice.pk)) == ["open"]


def test_several_objects_in_one_transaction_and_queryset_delete(app: App) -> None:
    from django.db import transaction

    from tests.sdk.django_capture_app.models import Invoice

    objects = Invoice.objects.using(app.using)
    with context(actor=USER, request_id=app.request):
        with transaction.atomic(using=app.using):
            made = [objects.create(status="open", amount=Decimal(n), code=f"{n}-{app.kind}")
                    for n in range(3)]  # fmt: skip
            made[0].status = "paid"
            made[0].save(using=app.using)
        keys = [invoice.pk for invoice in made]
        with transaction.atomic(using=app.using):
            objects.filter(pk__in=keys[1:]).delete()  # each object's signals: recorded
        objects.filter(pk=keys[0]).update(status="void")  # no signal: not recorded
    events = app.events(6)
    assert len(events) == 6
    assert [(e["action"], e["target"]["id"]) for e in events[:4]] == [
        ("create", str(keys[0])),
        ("create", str(keys[1])),
        ("create", str(keys[2])),
        ("update", str(keys[0])),
    ]
    assert sorted((e["action"], e["target"]["id"]) for e in events[4:]) == [
        ("delete", str(keys[1])),
        ("delete", str(keys[2])),
    ]
    assert events[3]["changes"] == [{"field": "status", "before": "open", "after": "paid"}]
    assert {"field": "status", "before": "open"} in events[4]["changes"]


def test_tracking_checks_its_arguments(django_databases: Databases) -> None:
    from indelible.sdk.integrations.django import DjangoCapture
    from tests.sdk.django_capture_app.models import Customer

    capture = DjangoCapture(object())
    with pytest.raises(ValueError, match="no concrete fields"):
        capture.track(Customer, fields=["name", "missing"])
    with pytest.raises(ValueError, match="both allowed and masked"):
        capture.track(Customer, fields=["name"], masked=["name"])


def test_client_mode_records_after_the_commit_and_nothing_on_rollback(
    using: str, live: LiveServer, tmp_path: Path
) -> None:
    from django.db import transaction

    from indelible.sdk.integrations.django import DjangoCapture
    from tests.sdk.django_capture_app.models import Customer

    client = new_client(live, tmp_path)
    capture = DjangoCapture(client, transactional=False)
    kind = f"cust_{uuid.uuid4().hex[:8]}"
    capture.track(Customer, fields=["name"], target_type=kind)
    request = request_id()
    try:
        with context(actor=USER, request_id=request):
            with transaction.atomic(using=using):
                made = Customer.objects.using(using).create(name="Initech")
                assert client.pending() == 0  # not before the commit
            with pytest.raises(RuntimeError), transaction.atomic(using=using):
                made.name = "Initrode"
                made.save(using=using)
                raise RuntimeError("rolled back")
        events = logged(live, client, request, lambda: None, 1)
    finally:
        capture.untrack(Customer)
        client.close()
    assert [(e["action"], e["changes"]) for e in events] == [
        ("create", [{"field": "name", "after": "Initech"}])
    ]


def test_before_as_loaded_takes_the_instance_values_and_reads_only_deferred_fields(
    using: str, live: LiveServer, tmp_path: Path
) -> None:
    from django.db import connections, transaction
    from django.test.utils import CaptureQueriesContext

    from indelible.sdk.integrations.django import DjangoCapture
    from tests.sdk.django_capture_app.models import Invoice

    client = new_client(live, tmp_path)
    capture = DjangoCapture(client, before="loaded")
    kind = f"inv_{uuid.uuid4().hex[:8]}"
    capture.track(Invoice, fields=["status", "amount"], target_type=kind)
    capture.start_relay(using)
    request = request_id()
    objects = Invoice.objects.using(using)
    try:
        with context(actor=USER, request_id=request):
            made = objects.create(status="open", amount=Decimal("1.00"))
            invoice = objects.get(pk=made.pk)
            with (
                CaptureQueriesContext(connections[using]) as queries,
                transaction.atomic(using=using),
            ):
                invoice.status = "sent"
                invoice.save(using=using)
            statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
            assert "SELECT" not in statements  # the loaded values, no read
            invoice.status, invoice.amount = "paid", Decimal("2")
            invoice.save(using=using)  # compared with what the last save wrote
            partial = objects.only("id").get(pk=made.pk)
            partial.status = "void"
            partial.save(using=using)  # deferred: read from the row
        events = logged(live, client, request, capture.relays[using].drain, 4)
    finally:
        capture.untrack(Invoice)
        capture.close()
        client.close()
        connections[using].close()
    assert [e["changes"] for e in events[1:]] == [
        [{"field": "status", "before": "open", "after": "sent"}],
        [
            {"field": "status", "before": "sent", "after": "paid"},
            {"field": "amount", "before": "1.00", "after": "2.00"},
        ],
        [{"field": "status", "before": "paid", "after": "void"}],
    ]


def test_before_must_be_database_or_loaded() -> None:
    from indelible.sdk.integrations.django import DjangoCapture

    with pytest.raises(ValueError, match="loaded"):
        DjangoCapture(object(), before="cached")
