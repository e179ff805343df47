"""Delivering alerts to notification sinks: at least once, with backoff, then a dead letter.

Each ``alert.fired`` entry the follower passes becomes one :class:`DeliveryRow` per sink the
alert names, stored in the same transaction as the follower's cursor. The deliverer sends
each due row; success marks it ``delivered``; a failure schedules the next attempt after an
exponential backoff (``backoff`` doubling up to ``max_backoff``), and after ``max_attempts``
the row is ``dead``: kept, listed by ``indelible alerts deliveries --status dead``, and
logged as an error. A crash after a send and before its row is marked sends it again: the
receiver de-duplicates by the alert id (the ``Indelible-Alert-Id`` header, the e-mail's
``Message-ID``).

The senders live at the edge (``indelible.sinks``); this module knows them only as
:class:`Sink`, built by a factory the entry point passes in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from indelible.core.rules import SinkSpec, parse_duration
from indelible.errors import ConfigError, IndelibleError
from indelible.storage.base import DeliveryRow, Store

__all__ = [
    "DeliveryFailed",
    "Retry",
    "Sink",
    "SinkFactory",
    "alert_payload",
    "attempt",
    "deliveries_for",
]

log = logging.getLogger("indelible.alerts")

_MAX_ERROR_CHARS = 500


class DeliveryFailed(Exception):
    """A sink could not deliver; ``message`` says why (never a secret)."""


class Sink(Protocol):
    """A notification sender. ``send`` returns once the receiver accepted the alert, or
    raises :class:`DeliveryFailed`."""

    name: str

    def send(self, alert_id: str, body: bytes, alert: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


SinkFactory = Callable[[SinkSpec], Sink]


@dataclass(frozen=True)
class Retry:
    """A sink's retry policy: ``max_attempts`` tries, ``backoff`` doubling to ``max_backoff``."""

    max_attempts: int = 8
    backoff_ms: int = 1_000
    max_backoff_ms: int = 300_000

    @classmethod
    def of(cls, spec: SinkSpec) -> Retry:
        options = spec.options
        try:
            attempts = options.get("max_attempts", 8)
            if type(attempts) is not int or attempts < 1:
                raise ValueError("max_attempts must be a whole number of at least 1")
            return cls(
                attempts,
                parse_duration(options.get("backoff", "1s")),
                parse_duration(options.get("max_backoff", "5m")),
            )
        except ValueError as exc:
            raise ConfigError(f"sink {spec.name}: {exc}", setting="alert_rules") from exc

    def delay_ms(self, attempts: int) -> int:
        """How long to wait after the ``attempts``-th failed try."""
        return int(min(self.backoff_ms * 2 ** min(attempts - 1, 30), self.max_backoff_ms))


def alert_payload(log_name: str, seq: int, event: Mapping[str, Any]) -> dict[str, Any]:
    """What every sink is given about an ``alert.fired`` entry."""
    data = event.get("data") if type(event.get("data")) is dict else {}
    assert isinstance(data, dict)
    return {
        "alert_id": event["event_id"],
        "log": log_name,
        "seq": seq,
        "fired_at": event.get("occurred_at"),
        "rule": data.get("rule"),
        "title": data.get("title"),
        "severity": data.get("severity"),
        "kind": data.get("kind"),
        "group": data.get("group"),
        "data": data,
    }


def deliveries_for(
    log_name: str, seq: int, event: Mapping[str, Any], default_sinks: tuple[str, ...], now_ms: int
) -> list[DeliveryRow]:
    """One pending row per sink the alert names (its rule's sinks, else ``default_sinks``)."""
    payload = alert_payload(log_name, seq, event)
    named = payload["data"].get("sinks")
    sinks = named if type(named) is list and named else list(default_sinks)
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return [
        DeliveryRow(
            payload["alert_id"], str(sink), seq, body, "pending", 0, now_ms, None, now_ms, now_ms
        )
        for sink in dict.fromkeys(sinks)
    ]


def attempt(
    store: Store,
    log_id: int,
    row: DeliveryRow,
    sinks: Mapping[str, tuple[Sink, Retry]],
    now_ms: int,
) -> DeliveryRow:
    """Try one delivery and store its outcome; return the updated row."""
    found = sinks.get(row.sink)
    attempts = row.attempts + 1
    if found is None:
        updated = replace(
            row,
            status="dead",
            attempts=attempts,
            last_error=f"no sink named {row.sink!r} is configured",
            updated_at_ms=now_ms,
        )
    else:
        sink, retry = found
        try:
            sink.send(row.alert_id, row.payload, orjson.loads(row.payload))
        except Exception as exc:  # any failure of a sender is a failed attempt, never a stop
            error = (str(exc) or type(exc).__name__)[:_MAX_ERROR_CHARS]
            if not isinstance(exc, DeliveryFailed | IndelibleError | OSError):
                log.exception("sink %s raised unexpectedly", row.sink)
            dead = attempts >= retry.max_attempts
            updated = replace(
                row,
                status="dead" if dead else "pending",
                attempts=attempts,
                next_attempt_ms=now_ms + retry.delay_ms(attempts),
                last_error=error,
                updated_at_ms=now_ms,
            )
        else:
            updated = replace(
                row, status="delivered", attempts=attempts, last_error=None, updated_at_ms=now_ms
            )
    store.update_delivery(log_id, updated)
    if updated.status == "dead":
        log.error(
            "alert %s to sink %s is a dead letter after %d attempts: %s",
            row.alert_id,
            row.sink,
            attempts,
            updated.last_error,
        )
    elif updated.status == "pending":
        log.warning(
            "alert %s to sink %s failed (attempt %d), retrying: %s",
            row.alert_id,
            row.sink,
            attempts,
            updated.last_error,
        )
    return updated
