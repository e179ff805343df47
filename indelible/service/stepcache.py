"""Replay steps of recently viewed records, so a record's state at another time T does not
decode its whole history again.

Entries are append-only and a leaf never changes, so the step of an entry *without personal
values* is the same forever: those are kept. An entry with personal values is decoded afresh
on every use (its values may be erased at any time and must then read as erased). A record's
new entries are found with one index seek past the last seq kept.

A record is taken in when it is asked for at or after its newest event (the whole record is
read then anyway: the entity page's first view shows the state now); a first request for an
earlier time reads only the events up to it, without the cache. The cache holds at most
``max_steps`` steps, forgetting the records least recently used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from indelible.core.entry import decode
from indelible.core.replay import Step
from indelible.service.query import step_of
from indelible.storage.base import EntryQuery, Store

__all__ = ["StepCache"]

_BATCH = 1_000


@dataclass
class _Record:
    last_seq: int | None = None
    steps: list[Step] = field(default_factory=list)  # of entries without personal values
    personal: list[int] = field(default_factory=list)  # seqs decoded on every use


class StepCache:
    """Decoded replay steps per (log, record type, record id)."""

    def __init__(self, max_steps: int = 200_000) -> None:
        self._max = max_steps
        self._records: OrderedDict[tuple[int, str, str], _Record] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def steps(
        self, store: Store, log_id: int, kind: str, ref: str, at_ms: int, max_events: int
    ) -> tuple[list[Step], list[dict[str, Any]]] | None:
        """The steps of the record's events that occurred at or before ``at_ms``, and the
        erased values among them (as ``query.entity_state`` reports them); None when the
        record has more than ``max_events`` events in all (it is then not cached), or when
        it is not held yet and ``at_ms`` is before its newest event: that request needs only
        part of the record, which the caller reads more cheaply itself."""
        if not self._holds((log_id, kind, ref)) and at_ms < _newest_occurred(
            store, log_id, kind, ref
        ):
            return None
        record = self._catch_up(store, log_id, kind, ref, max_events)
        if record is None:
            return None
        chosen = [step for step in record.steps if step.occurred_at_ms <= at_ms]
        erased: list[dict[str, Any]] = []
        for seq in record.personal:
            row = store.get_entry(log_id, seq)
            found: list[dict[str, Any]] = []
            step = step_of(seq, decode(row.leaf, row.personal), found)
            if step.occurred_at_ms <= at_ms:
                chosen.append(step)
                erased += found
        return chosen, erased  # at most max_events: the record has no more in all

    def _holds(self, key: tuple[int, str, str]) -> bool:
        with self._lock:
            return key in self._records

    def _catch_up(
        self, store: Store, log_id: int, kind: str, ref: str, max_events: int
    ) -> _Record | None:
        key = (log_id, kind, ref)
        with self._lock:
            held = self._records.get(key)
            if held is not None:
                self._records.move_to_end(key)
            record = (
                _Record(held.last_seq, list(held.steps), list(held.personal)) if held else _Record()
            )
        grew = False
        while True:
            query = EntryQuery(
                target_type=kind, target_id=ref, after_seq=record.last_seq, limit=_BATCH
            )
            rows = store.query_entries(log_id, query)
            for row in rows:
                decoded = decode(row.leaf, row.personal)
                if decoded.commitments:
                    record.personal.append(row.seq)
                else:
                    record.steps.append(step_of(row.seq, decoded, []))
                record.last_seq = row.seq
            grew = grew or bool(rows)
            if len(record.steps) + len(record.personal) > max_events:
                return None
            if len(rows) < _BATCH:
                break
        if grew:
            self._keep(key, record)
        return record

    def _keep(self, key: tuple[int, str, str], record: _Record) -> None:
        size = len(record.steps) + len(record.personal)
        with self._lock:
            held = self._records.pop(key, None)
            if held is not None:
                self._held -= len(held.steps) + len(held.personal)
                if (held.last_seq or -1) > (record.last_seq or -1):
                    record = held  # another request caught up further meanwhile
                    size = len(record.steps) + len(record.personal)
            if size > self._max:
                return
            self._records[key] = record
            self._held += size
            while self._held > self._max:
                _, dropped = self._records.popitem(last=False)
                self._held -= len(dropped.steps) + len(dropped.personal)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._held = 0


def _newest_occurred(store: Store, log_id: int, kind: str, ref: str) -> int:
    """When the record's newest entry occurred, by its lookup hint (it only chooses how to
    read; every answer comes from the leaves); -1 when the record has no entry."""
    query = EntryQuery(target_type=kind, target_id=ref, descending=True, limit=1)
    rows = store.query_entries(log_id, query)
    return rows[0].index.occurred_at_ms or 0 if rows else -1
