"""Queries and forensics over one log: filtered pages, entity history, state at time T, export.

Results are entries as stored, decoded from their leaf bytes (never from the lookup-hint
columns, which only select): ``{"seq", "received_at", "leaf_hash", "event"}``. Pages are keyset
paginated by seq: a cursor names the last seq returned and the order it was returned in, so a
page never repeats or skips an entry however many are appended meanwhile.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from indelible.core.entry import DecodedEntry, decode
from indelible.core.replay import EntityState, Step, replay
from indelible.core.timestamps import parse_stored_timestamp
from indelible.errors import InputError, LimitExceeded, NotFound
from indelible.storage.base import EntryQuery, EntryRow, Store

if TYPE_CHECKING:
    from indelible.service.stepcache import StepCache

__all__ = [
    "EventFilter",
    "Page",
    "StateReport",
    "decode_cursor",
    "encode_cursor",
    "entity_history",
    "entity_state",
    "entry_view",
    "export_rows",
    "get_event",
    "query_events",
    "search_text",
    "step_of",
    "too_many_events",
]

MAX_PAGE = 1_000
MAX_TEXT_SCAN = 5_000  # entries a free-text page reads at most before it answers
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_CURSOR = re.compile(r"^([ad])([0-9]{1,16})$")


@dataclass(frozen=True, slots=True)
class EventFilter:
    """The public filter of ``GET /v1/events`` (times in epoch ms, ranges ``[from, to)``)."""

    actor_id: str | None = None
    actor_type: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    event_type: str | None = None  # exact, or a prefix written "invoice.*"
    action: str | None = None
    outcome: str | None = None
    request_id: str | None = None
    ip: str | None = None
    occurred_from_ms: int | None = None
    occurred_to_ms: int | None = None
    received_from_ms: int | None = None
    received_to_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The filter as the meta-audit event records it: only what was given."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    def to_query(self) -> EntryQuery:
        exact, prefix = self.event_type, None
        if exact is not None:
            if exact.endswith(".*"):
                prefix, exact = exact[:-1], None
                if not _EVENT_TYPE.match(prefix[:-1]):
                    raise InputError(f"event_type prefix {self.event_type!r} is not name.*")
            elif not _EVENT_TYPE.match(exact):
                raise InputError(f"event_type {exact!r} is not a dotted lowercase name")
        for low, high, name in (
            (self.occurred_from_ms, self.occurred_to_ms, "occurred"),
            (self.received_from_ms, self.received_to_ms, "received"),
        ):
            if low is not None and high is not None and high < low:
                raise InputError(f"{name}_to is before {name}_from")
        return EntryQuery(
            actor_id=self.actor_id,
            actor_type=self.actor_type,
            target_type=self.target_type,
            target_id=self.target_id,
            event_type=exact,
            event_type_prefix=prefix,
            action=self.action,
            outcome=self.outcome,
            request_id=self.request_id,
            ip=self.ip,
            occurred_from_ms=self.occurred_from_ms,
            occurred_to_ms=self.occurred_to_ms,
            received_from_ms=self.received_from_ms,
            received_to_ms=self.received_to_ms,
        )


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor}


def encode_cursor(seq: int, descending: bool) -> str:
    return f"{'d' if descending else 'a'}{seq}"


def decode_cursor(cursor: str, descending: bool) -> int:
    """The seq a cursor names; refused when it belongs to the other order."""
    match = _CURSOR.match(cursor)
    if match is None:
        raise InputError(f"cursor {cursor!r} is not one this server returned")
    if (match.group(1) == "d") != descending:
        raise InputError("the cursor was returned for the other order")
    return int(match.group(2))


def entry_view(row: EntryRow) -> dict[str, Any]:
    """An entry as the API returns it, decoded from its leaf (personal values restored)."""
    decoded = decode(row.leaf, row.personal)
    view: dict[str, Any] = {
        "seq": row.seq,
        "received_at": decoded.received_at,
        "leaf_hash": row.leaf_hash.hex(),
        "event": decoded.event,
    }
    if decoded.erased:
        view["erased"] = list(decoded.erased)
    return view


def _page(
    store: Store,
    log_id: int,
    query: EntryQuery,
    limit: int,
    cursor: str | None,
    descending: bool,
) -> Page:
    """One keyset page of ``query`` after ``cursor``, in the chosen order."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be 1-{MAX_PAGE}")
    after = None if cursor is None else decode_cursor(cursor, descending)
    query = replace(query, descending=descending, after_seq=after, limit=limit + 1)
    rows = store.query_entries(log_id, query)
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1].seq, query.descending) if more and rows else None
    return Page([entry_view(row) for row in rows], cursor)


def query_events(
    store: Store,
    log_id: int,
    selection: EventFilter,
    *,
    limit: int = 100,
    cursor: str | None = None,
    descending: bool = False,
) -> Page:
    return _page(store, log_id, selection.to_query(), limit, cursor, descending)


def search_text(
    store: Store,
    log_id: int,
    selection: EventFilter,
    text: str,
    *,
    limit: int = 100,
    cursor: str | None = None,
    descending: bool = False,
    max_scan: int = MAX_TEXT_SCAN,
) -> Page:
    """Events matching ``selection`` whose decoded JSON contains ``text`` (case-folded).

    Nothing indexes free text, so a page reads at most ``max_scan`` matching entries after
    ``cursor``: it may hold fewer than ``limit`` items (none, even) and still carry a
    ``next_cursor``, which then names the last entry read, so paging goes on where the
    reading stopped and never skips or repeats an entry.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be 1-{MAX_PAGE}")
    needle = text.casefold()
    if not needle.strip():
        raise InputError("the search text is empty")
    after = None if cursor is None else decode_cursor(cursor, descending)
    query = replace(selection.to_query(), descending=descending)
    items: list[dict[str, Any]] = []
    scanned, last = 0, after
    while scanned < max_scan:
        batch = min(500, max_scan - scanned)
        rows = store.query_entries(log_id, replace(query, after_seq=last, limit=batch))
        for row in rows:
            scanned += 1
            last = row.seq
            view = entry_view(row)
            if needle in orjson.dumps(view["event"]).decode("utf-8").casefold():
                items.append(view)
                if len(items) == limit:
                    return Page(items, encode_cursor(last, descending))
        if len(rows) < batch:
            return Page(items, None)
    assert last is not None  # max_scan >= 1 rows were read
    return Page(items, encode_cursor(last, descending))


def get_event(store: Store, log_id: int, event_id: str) -> dict[str, Any]:
    row = store.find_event_ids(log_id, [event_id]).get(event_id)
    if row is None:
        raise NotFound(f"no event {event_id}")
    return entry_view(row)


def entity_history(
    store: Store,
    log_id: int,
    kind: str,
    ref: str,
    *,
    limit: int = 100,
    cursor: str | None = None,
    descending: bool = False,
) -> Page:
    """Every event whose target, or one of whose related records, is ``kind``/``ref``."""
    return _page(store, log_id, EntryQuery(touching=(kind, ref)), limit, cursor, descending)


@dataclass(frozen=True, slots=True)
class StateReport:
    kind: str
    ref: str
    state: EntityState
    erased: list[dict[str, Any]]  # changes whose before/after was erased: unknown, not null
    events: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "id": self.ref,
            **self.state.to_dict(),
            "erased": self.erased,
            "events_considered": self.events,
        }


def entity_state(
    store: Store,
    log_id: int,
    kind: str,
    ref: str,
    at_ms: int,
    *,
    max_events: int,
    cache: StepCache | None = None,
) -> StateReport:
    """The record's state at ``at_ms``, replayed from the changes of every event that has it
    as its target and occurred at or before ``at_ms`` (``core.replay`` states the rules).

    An erased ``before`` is not compared (it is unknown, not null); an erased ``after`` sets
    the field to null and is listed under ``erased``. With a ``cache``
    (:class:`~indelible.service.stepcache.StepCache`) the record's events already decoded
    are not read again; the answer is the same.

    """
    cached = None if cache is None else cache.steps(store, log_id, kind, ref, at_ms, max_events)
    if cached is not None:
        return StateReport(kind, ref, replay(cached[0], at_ms), cached[1], len(cached[0]))
    query = EntryQuery(
        target_type=kind, target_id=ref, occurred_to_ms=at_ms + 1, limit=max_events + 1
    )
    rows = store.query_entries(log_id, query)
    if len(rows) > max_events:
        raise too_many_events(kind, ref, max_events)
    steps: list[Step] = []
    erased: list[dict[str, Any]] = []
    for row in rows:
        steps.append(step_of(row.seq, decode(row.leaf, row.personal), erased))
    return StateReport(kind, ref, replay(steps, at_ms), erased, len(rows))


def too_many_events(kind: str, ref: str, max_events: int) -> LimitExceeded:
    return LimitExceeded(
        f"more than {max_events} events touch {kind}/{ref} before that time",
        limit="max_state_events",
        maximum=max_events,
    )


def step_of(seq: int, decoded: DecodedEntry, erased: list[dict[str, Any]]) -> Step:
    """The replay step of a decoded entry; its erased values are appended to ``erased``."""
    event = decoded.event
    if decoded.erased:
        event = _forget_erased(event, decoded.erased, seq, erased)
    occurred = parse_stored_timestamp(event.get("occurred_at"))
    assert occurred is not None  # validated at ingest, checked by verify
    return Step.from_event(seq, occurred, event)


def _forget_erased(
    event: dict[str, Any], pointers: tuple[str, ...], seq: int, erased: list[dict[str, Any]]
) -> dict[str, Any]:
    changes = [dict(change) for change in event.get("changes", [])]
    for pointer in pointers:
        parts = pointer.split("/")
        if len(parts) >= 4 and parts[1] == "changes" and parts[2].isdigit():
            change = changes[int(parts[2])]
            erased.append({"seq": seq, "field": change.get("field"), "pointer": pointer})
            if parts[3] == "before":  # all of it, or a part: the before is not known
                change.pop("before", None)
    return {**event, "changes": changes}


def export_rows(
    store: Store, log_id: int, selection: EventFilter, max_seq: int, *, chunk: int = 1_000
) -> Iterator[EntryRow]:
    """Every entry matching ``selection`` up to ``max_seq``, in seq order, chunk by chunk."""
    query = replace(selection.to_query(), max_seq=max_seq, limit=chunk)
    while True:
        rows = store.query_entries(log_id, query)
        yield from rows
        if len(rows) < chunk:
            return
        query = replace(query, after_seq=rows[-1].seq)
