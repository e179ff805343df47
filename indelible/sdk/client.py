"""``Client`` and ``AsyncClient``: build events, commit them to the outbox, deliver them.

``record()`` returns once the event is durable in the local outbox (fsync'd), not once the
service has it: the background sender (:mod:`indelible.sdk.sender`) delivers it, retrying for
as long as the service is away. ``flush()`` waits for delivery; ``close()`` flushes within a
grace period and stops the sender, leaving anything undelivered in the outbox for the next
start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from indelible.core.checkpoint import Checkpoint
from indelible.core.encoding import MAX_SAFE_INTEGER
from indelible.core.event import Event, Limits, validate_batch, validate_event
from indelible.core.ids import uuid7
from indelible.core.timestamps import format_timestamp
from indelible.errors import InvalidEvent
from indelible.sdk.context import current_context
from indelible.sdk.outbox import FullPolicy, Outbox, Rejected
from indelible.sdk.proofs import Prover
from indelible.sdk.sender import MAX_REQUEST_BYTES, Receipts, Sender

__all__ = ["AsyncClient", "AsyncProver", "Client"]

# The service judges clock skew with its own clock; every other rule is checked here first,
# so a malformed event fails in the caller, not later in the sender.
LOCAL_LIMITS = Limits(max_future_ms=2**62)
_USER_AGENT = "indelible-sdk-python"
log = logging.getLogger("indelible.sdk")
_CHANGE_KEYS = frozenset({"field", "before", "after"})
_ENVELOPES_KEPT = 256


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _occurred_at(value: str | dt.datetime | None) -> str:
    if value is None:
        return format_timestamp(_now_ms())
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware (UTC)")
        return format_timestamp(int(value.timestamp() * 1000))
    return value


class _Envelope:
    """The validated parts of capture events built under one audit context."""

    __slots__ = ("context", "default_actor", "fields", "source")

    def __init__(
        self,
        context: Any,
        default_actor: dict[str, Any] | None,
        source: str | None,
        fields: dict[str, Any],
    ) -> None:
        self.context, self.default_actor, self.source = context, default_actor, source
        self.fields = fields


def _plain_capture(
    target: Mapping[str, Any] | None, changes: list[dict[str, Any]], encoded: bytes
) -> bool:
    """Whether a capture event whose envelope is known valid certainly passes every rule.

    Strings: the encoding is no longer than ``max_string_bytes`` (no string can be longer
    than the whole), nor half ``max_event_bytes``, and holds no escaped NUL. Values: scalars
    JSON and the service accept as they are; anything else (a nested value) is not sure.
    """
    limits = LOCAL_LIMITS
    if (
        not encoded
        or len(encoded) > limits.max_string_bytes
        or len(encoded) * 2 > limits.max_event_bytes
        or b"\\u0000" in encoded
        or len(changes) > limits.max_changes
    ):
        return False
    if target is not None and (
        len(target) != 2 or type(target.get("id")) is not str or not target["id"]
    ):
        return False
    for change in changes:
        if type(change) is not dict or not _CHANGE_KEYS.issuperset(change):
            return False
        field = change.get("field")
        if type(field) is not str or not field:
            return False
        for name, value in change.items():
            if name == "field":
                continue
            kind = type(value)
            if kind is str or kind is bool or value is None:
                continue
            if kind is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                continue
            if (
                kind is float
                and math.isfinite(value)
                and not (value.is_integer() and abs(value) > MAX_SAFE_INTEGER)
            ):
                continue
            return False
    return True


class Client:
    """Records audit events durably and delivers them to an Indelible service.

    ``url``/``token``: the service and a writer API key; ``url=None`` keeps events in the
    outbox without sending them (the next client with a URL delivers them). ``outbox``: the
    SQLite file. ``when_full``: ``"block"`` (wait up to ``block_timeout`` s, then
    :class:`~indelible.sdk.OutboxFull`), ``"raise"`` or ``"spill"`` (to ``<outbox>.spill``).
    ``vkey``: the log's verification key (C2SP vkey) for the proof helpers.
    """

    def __init__(
        self,
        url: str | None,
        token: str | None = None,
        outbox: str | os.PathLike[str] = "./audit-outbox.sqlite3",
        *,
        max_events: int = 100_000,
        max_bytes: int = 256 << 20,
        when_full: FullPolicy = "block",
        block_timeout: float = 30.0,
        spill_path: str | os.PathLike[str] | None = None,
        default_actor: Mapping[str, Any] | None = None,
        source: str | None = "app",
        batch_size: int = 500,
        timeout: float = 10.0,
        base_backoff: float = 0.2,
        max_backoff: float = 30.0,
        poll: float = 5.0,
        close_timeout: float = 10.0,
        on_receipts: Receipts | None = None,
        vkey: str | None = None,
        origin: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.default_actor = dict(default_actor) if default_actor is not None else None
        self.source = source
        self.close_timeout = close_timeout
        self._sender: Sender | None = None
        self._http: httpx.Client | None = None
        self._envelopes: dict[tuple[Any, ...], _Envelope] = {}
        self.outbox = Outbox(
            outbox,
            max_events=max_events,
            max_bytes=max_bytes,
            when_full=when_full,
            block_timeout=block_timeout,
            spill_path=spill_path,
            on_commit=self._wake,
        )
        if url is not None:
            headers = {"User-Agent": _USER_AGENT}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            self._http = httpx.Client(
                base_url=url, headers=headers, timeout=timeout, transport=transport
            )
            self._sender = Sender(
                self.outbox,
                self._http,
                batch_size=batch_size,
                max_request_bytes=MAX_REQUEST_BYTES,
                base_backoff=base_backoff,
                max_backoff=max_backoff,
                poll=poll,
                on_receipts=on_receipts,
            )
            self._sender.start()
        self.proofs = Prover(self._http, self.outbox, vkey=vkey, origin=origin)

    # -- building and recording ----------------------------------------------------------

    def build_event(
        self,
        event_type: str,
        *,
        target: Mapping[str, Any] | None = None,
        action: str | None = None,
        changes: Sequence[Mapping[str, Any]] | None = None,
        actor: Mapping[str, Any] | None = None,
        reason: str | None = None,
        outcome: str = "success",
        related: Sequence[Mapping[str, Any]] | None = None,
        data: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        occurred_at: str | dt.datetime | None = None,
        event_id: str | None = None,
        personal: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """A complete, locally validated event (raises InvalidEvent naming every problem).

        ``event_id`` defaults to a new UUIDv7, ``occurred_at`` to now (UTC, ms); ``actor``,
        ``reason`` and ``context`` default to the :func:`~indelible.sdk.context` in effect
        (an explicit ``context`` is laid over it), then to the client's ``default_actor`` and
        ``source``. ``action`` defaults to the last part of ``event_type``.
        """
        return self._validated(
            event_type,
            target=target,
            action=action,
            changes=changes,
            actor=actor,
            reason=reason,
            outcome=outcome,
            related=related,
            data=data,
            context=context,
            occurred_at=occurred_at,
            event_id=event_id,
            personal=personal,
        ).body

    def _validated(self, event_type: str, **fields: Any) -> Event:
        now = _now_ms()
        current = current_context()
        body: dict[str, Any] = {
            "event_id": fields["event_id"] or uuid7(now, os.urandom),
            "event_type": event_type,
            "occurred_at": _occurred_at(fields["occurred_at"]),
            "action": fields["action"] or str(event_type).rsplit(".", 1)[-1],
            "outcome": fields["outcome"],
        }
        actor = fields["actor"] if fields["actor"] is not None else current.event_actor()
        actor = actor if actor is not None else self.default_actor
        if actor is not None:
            body["actor"] = dict(actor)
        reason = fields["reason"] if fields["reason"] is not None else current.reason
        if reason is not None:
            body["reason"] = reason
        merged = current.event_context()
        if self.source is not None:
            merged.setdefault("source", self.source)
        if fields["context"]:
            merged.update(fields["context"])
        if merged:
            body["context"] = merged
        for name in ("target", "changes", "related", "data", "personal"):
            value = fields[name]
            if value is not None:
                body[name] = (
                    dict(value) if isinstance(value, Mapping) else [_copy(v) for v in value]
                )
        return validate_event(body, now_ms=now, limits=LOCAL_LIMITS)

    def capture_event(
        self,
        event_type: str,
        *,
        target: Mapping[str, Any] | None,
        action: str,
        changes: list[dict[str, Any]],
        outcome: str = "success",
    ) -> tuple[dict[str, Any], bytes]:
        """The model integrations' :meth:`build_event`: the same event, checked against the
        same rules (raises the same ``InvalidEvent``), and its JSON for the outbox row.

        The check is split so a change pays only for what varies: the envelope (event type,
        action, outcome, actor, reason, context, target type) is validated in full, with the
        first event built under each audit context in effect, and kept; each later event has
        its target id and change values checked in straight-line code, and its JSON's size and
        NUL characters on the encoding the outbox row needs anyway. Anything that check is not
        sure of (a nested value, a long or suspicious encoding) goes through the full
        validation. ``target`` and ``changes`` are used as given (not copied): do not change
        them afterwards.
        """
        now = _now_ms()
        current = current_context()
        target_type = target.get("type") if target is not None else None
        key = (id(current), event_type, action, outcome, target_type)
        envelope = self._envelopes.get(key)
        fresh = (
            envelope is None
            or envelope.context is not current
            or envelope.default_actor != self.default_actor
            or envelope.source != self.source
        )
        if envelope is None or fresh:
            envelope = self._envelope(current)
        body: dict[str, Any] = {
            "event_id": uuid7(now, os.urandom),
            "event_type": event_type,
            "occurred_at": format_timestamp(now),
            "action": action,
            "outcome": outcome,
            **envelope.fields,
        }
        if target is not None:
            body["target"] = target
        body["changes"] = changes
        try:
            encoded = orjson.dumps(body)
        except orjson.JSONEncodeError:
            encoded = b""  # a lone surrogate or a foreign type: the full check names it
        if fresh or not _plain_capture(target, changes, encoded):
            validate_event(body, now_ms=now, limits=LOCAL_LIMITS)  # raises, or it is fine
        if fresh:  # this envelope passed the full check: later events reuse it
            if len(self._envelopes) >= _ENVELOPES_KEPT:
                self._envelopes.clear()
            self._envelopes[key] = envelope
        return body, encoded

    def _envelope(self, current: Any) -> _Envelope:
        """The actor, reason and context :meth:`build_event` would take from ``current``."""
        fields: dict[str, Any] = {}
        actor = current.event_actor()
        actor = actor if actor is not None else self.default_actor
        if actor is not None:
            fields["actor"] = dict(actor)
        if current.reason is not None:
            fields["reason"] = current.reason
        merged = current.event_context()
        if self.source is not None:
            merged.setdefault("source", self.source)
        if merged:
            fields["context"] = merged
        default = dict(self.default_actor) if self.default_actor is not None else None
        return _Envelope(current, default, self.source, fields)

    def record_built(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Commit ``events`` (from :meth:`build_event`, or complete event dicts) to the outbox
        in one durable commit; return once it is fsync'd. All or nothing."""
        checked = validate_batch(events, now_ms=_now_ms(), limits=LOCAL_LIMITS)
        self.outbox.append([(event.event_id, event.canonical) for event in checked])

    def record_relayed(self, bodies: Sequence[str | bytes]) -> int:
        """The relay's :meth:`record_built`: the events' JSON, each checked in full; those
        refused (malformed JSON, a broken rule) are kept in :meth:`rejected` with code
        ``invalid_event`` and logged, and the others committed in one durable commit, so one
        bad row never holds back the rows behind it. The number refused."""
        now = _now_ms()
        valid: list[tuple[str, bytes]] = []
        refused: list[tuple[str, bytes, str, str]] = []
        for body in bodies:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                text = body if isinstance(body, str) else body.decode(errors="replace")
                kept = orjson.dumps({"unparsed": text})
                refused.append(("", kept, "invalid_event", f"not JSON: {exc}"))
                continue
            try:
                event = validate_event(parsed, now_ms=now, limits=LOCAL_LIMITS)
            except InvalidEvent as exc:
                event_id = parsed.get("event_id") if isinstance(parsed, dict) else None
                kept = orjson.dumps(parsed, option=orjson.OPT_NON_STR_KEYS)
                why = "; ".join(f"{e.field or '/'}: {e.message}" for e in exc.errors)
                refused.append((str(event_id or ""), kept, "invalid_event", why))
                continue
            valid.append((event.event_id, event.canonical))
        if refused:
            for event_id, _, _, why in refused:
                log.error("indelible relay: event %r refused: %s", event_id, why)
            self.outbox.refuse(refused)
        if valid:
            self.outbox.append(valid)
        return len(refused)

    def record(self, event_type: str, **fields: Any) -> str:
        """Build one event (as :meth:`build_event`) and commit it durably; its event_id."""
        names = (
            "target",
            "action",
            "changes",
            "actor",
            "reason",
            "related",
            "data",
            "context",
            "occurred_at",
            "event_id",
            "personal",
        )
        unknown = set(fields) - {*names, "outcome"}
        if unknown:
            raise TypeError(f"record() got unexpected arguments: {', '.join(sorted(unknown))}")
        given = {name: fields.get(name) for name in names}
        event = self._validated(event_type, outcome=fields.get("outcome", "success"), **given)
        self.outbox.append([(event.event_id, event.canonical)])
        return event.event_id

    # -- delivery ------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._sender is not None:
            self._sender.wake()

    def pending(self) -> int:
        """Events recorded and not yet acknowledged (nor rejected)."""
        return self.outbox.pending()

    def rejected(self, limit: int = 1000) -> list[Rejected]:
        """Events the service refused for good, kept in the outbox with its answer."""
        return self.outbox.rejected(limit)

    @property
    def last_error(self) -> str | None:
        """Why the last delivery attempt failed, while the sender is retrying; else None."""
        return self._sender.last_error if self._sender is not None else None

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring: pending (of which spilled), delivered, retried and
        rejected by this client, and the last delivery error."""
        sender = self._sender
        return {
            "pending": self.outbox.pending(),
            "spilled": self.outbox.spilled(),
            "sent": sender.sent if sender is not None else 0,
            "retries": sender.retries if sender is not None else 0,
            "rejected": sender.rejected if sender is not None else 0,
            "last_error": self.last_error,
        }

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every recorded event is acknowledged (or rejected); True if so."""
        if self._sender is None or self.outbox.closed:
            return self.outbox.pending() == 0 if not self.outbox.closed else False
        self._sender.wake()
        return self.outbox.wait_empty(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush for at most ``timeout`` (default ``close_timeout``) seconds, stop the sender
        and close the outbox. Undelivered events stay in the outbox. True if all were sent."""
        if self.outbox.closed:
            return False
        grace = self.close_timeout if timeout is None else timeout
        delivered = self.flush(grace) if self._sender is not None else self.pending() == 0
        if self._sender is not None:
            self._sender.stop(timeout=max(grace, 1.0) + 30.0)
        if self._http is not None:
            self._http.close()
        self.outbox.close()
        return delivered

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


class AsyncClient:
    """:class:`Client` for asyncio code: the same outbox and sender, with every call that
    may wait on the disk or the network run in a worker thread so the event loop never blocks.
    """

    def __init__(self, url: str | None, token: str | None = None, *args: Any, **kw: Any) -> None:
        self._client = Client(url, token, *args, **kw)
        self.proofs = AsyncProver(self._client.proofs)

    @property
    def outbox(self) -> Outbox:
        return self._client.outbox

    def build_event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """As :meth:`Client.build_event` (pure CPU; no await needed)."""
        return self._client.build_event(event_type, **fields)

    async def record_built(self, events: Sequence[Mapping[str, Any]]) -> None:
        await asyncio.to_thread(self._client.record_built, list(events))

    async def record(self, event_type: str, **fields: Any) -> str:
        event = self._client.build_event(event_type, **fields)  # context read in this task
        await asyncio.to_thread(self._client.record_built, [event])
        return str(event["event_id"])

    def pending(self) -> int:
        return self._client.pending()

    def rejected(self, limit: int = 1000) -> list[Rejected]:
        return self._client.rejected(limit)

    @property
    def last_error(self) -> str | None:
        return self._client.last_error

    def stats(self) -> dict[str, Any]:
        return self._client.stats()

    async def flush(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self._client.flush, timeout)

    async def close(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self._client.close, timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncProver:
    """:class:`~indelible.sdk.Prover` for asyncio code: each check runs in a worker thread."""

    def __init__(self, prover: Prover) -> None:
        self._prover = prover

    async def pinned(self) -> Checkpoint | None:
        return await asyncio.to_thread(self._prover.pinned)

    async def pin(self, note: str) -> Checkpoint:
        return await asyncio.to_thread(self._prover.pin, note)

    async def refresh(self) -> Checkpoint:
        return await asyncio.to_thread(self._prover.refresh)

    async def verify_receipt(self, receipt: Mapping[str, Any]) -> Checkpoint:
        return await asyncio.to_thread(self._prover.verify_receipt, receipt)
