"""Events per hour of a log, for charts: counted by received time, cached by hour.

Each hour is one ``count_entries`` over the received-time index (never a scan of the log).
An hour that ended more than :data:`SETTLE_MS` ago cannot gain entries — the sequencer stamps
``received_at`` when it takes a batch and commits it well within that margin — so its count is
kept and never asked again; only the recent hours are counted on each call.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from indelible.storage.base import EntryQuery, Store

__all__ = ["HOUR_MS", "SETTLE_MS", "HourCount", "HourlyCounts"]

HOUR_MS = 3_600_000
SETTLE_MS = 5 * 60_000


@dataclass(frozen=True, slots=True)
class HourCount:
    start_ms: int  # the hour's first millisecond (UTC)
    count: int


class HourlyCounts:
    """Settled hourly counts of every log of one store, bounded (an LRU of hours)."""

    def __init__(self, store: Store, *, max_hours: int = 100_000) -> None:
        self._store, self._max = store, max_hours
        self._settled: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._lock = threading.Lock()

    def last_hours(self, log_id: int, now_ms: int, hours: int = 24) -> list[HourCount]:
        """The ``hours`` hours up to and including the current one, oldest first."""
        current = now_ms - now_ms % HOUR_MS
        return [self._count(log_id, start, now_ms) for start in self._starts(current, hours)]

    @staticmethod
    def _starts(current: int, hours: int) -> list[int]:
        return [current - HOUR_MS * back for back in range(hours - 1, -1, -1)]

    def _count(self, log_id: int, start: int, now_ms: int) -> HourCount:
        key = (log_id, start)
        with self._lock:
            cached = self._settled.get(key)
            if cached is not None:
                self._settled.move_to_end(key)
                return HourCount(start, cached)
        query = EntryQuery(received_from_ms=start, received_to_ms=start + HOUR_MS)
        count = self._store.count_entries(log_id, query)
        if start + HOUR_MS + SETTLE_MS <= now_ms:
            with self._lock:
                self._settled[key] = count
                while len(self._settled) > self._max:
                    self._settled.popitem(last=False)
        return HourCount(start, count)
