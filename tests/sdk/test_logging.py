"""The logging handler: audit-marked records become events; nothing it meets raises into
the application's logging."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path

import orjson
import pytest

from indelible.sdk import Client, context
from indelible.sdk.logging import AuditLogHandler


@pytest.fixture
def logger(tmp_path: Path) -> Iterator[tuple[logging.Logger, AuditLogHandler]]:
    client = Client(
        None,
        outbox=tmp_path / "o.sqlite3",
        default_actor={"id": "billing", "type": "service"},
        max_events=3,
        when_full="raise",
    )
    handler = AuditLogHandler(client)
    log = logging.getLogger(f"test.sdk.{tmp_path.name}")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log, handler
    finally:
        log.removeHandler(handler)
        client.close()


def _recorded(handler: AuditLogHandler) -> list[dict[str, object]]:
    rows = handler.client.outbox.peek(100, 1 << 20)
    return [orjson.loads(row.body) for row in rows]


def test_audit_records_become_events_and_others_are_ignored(
    logger: tuple[logging.Logger, AuditLogHandler],
) -> None:
    log, handler = logger
    log.info("just a message")
    log.info("audit is not a mapping", extra={"audit": "yes"})
    with context(request_id="req-5"):
        log.warning(
            "voided %s",
            "INV-1",
            extra={
                "audit": {
                    "event_type": "invoice.voided",
                    "target": {"type": "invoice", "id": "INV-1"},
                    "action": "update",
                    "reason": "duplicate",
                    "data": {"amount": 10},
                }
            },
        )
    (event,) = _recorded(handler)
    assert event["event_type"] == "invoice.voided"
    assert event["reason"] == "duplicate"
    assert event["context"] == {"request_id": "req-5", "source": "app"}
    assert event["data"] == {
        "amount": 10,
        "log_message": "voided INV-1",
        "logger": log.name,
        "level": "WARNING",
    }


def test_a_record_that_cannot_be_recorded_never_raises_into_logging(
    logger: tuple[logging.Logger, AuditLogHandler],
) -> None:
    log, handler = logger
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        log.info("bad", extra={"audit": {"event_type": "Not Valid"}})
        log.info("bad", extra={"audit": {"event_type": "x.y", "colour": "red"}})
        for n in range(4):  # the outbox holds 3, then refuses (when_full="raise")
            log.info("ok", extra={"audit": {"event_type": "invoice.viewed", "data": {"n": n}}})
    assert handler.failures == 3
    assert len(_recorded(handler)) == 3
    assert "InvalidEvent" in stderr.getvalue() and "OutboxFull" in stderr.getvalue()
