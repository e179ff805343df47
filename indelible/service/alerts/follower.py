"""The follower of one log: evaluates each entry once, in seq order, across restarts.

One step, in order:

1. read the entries from the cursor (the next seq to evaluate) to at most ``batch`` further;
2. evaluate each with the rules (``alert.*`` entries are not evaluated: an ``alert.fired``
   entry instead yields its deliveries, one per sink);
3. append the alerts that fired, as ``alert.fired`` events, and wait for their durable
   commit;
4. store, in ONE transaction, the new cursor, what the rules remember, and the deliveries.

A crash before 4 leaves the old cursor: the same entries are evaluated again after the
restart, from the same stored state, and give the same alerts with the same (UUIDv8) ids,
which the log's event_id idempotency keeps once. Deliveries are enqueued only by step 4, so
each ``alert.fired`` entry is enqueued exactly once.

Windows are not stored: on start the follower re-reads the span of the log the longest
window covers, back from the cursor, and feeds it to the evaluator without firing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from indelible.core.alerting import ALERT_EVENT_TYPE, Evaluator, Firing, alert_event
from indelible.core.entry import PersonalValue, decode, restore_personal
from indelible.core.event import Event, validate_event
from indelible.core.rules import RuleSet
from indelible.errors import Conflict, IndelibleError, InvalidEvent
from indelible.service.alerts.delivery import deliveries_for
from indelible.storage.base import DeliveryRow, LogInfo, Store

__all__ = ["CURSOR", "LogFollower"]

log = logging.getLogger("indelible.alerts")

CURSOR = "cursor"
Append = Callable[[list[Event]], Any]


class LogFollower:
    """Evaluates one log's entries with a rule set; see the module docstring."""

    def __init__(
        self,
        store: Store,
        info: LogInfo,
        rules: RuleSet,
        *,
        append: Append,
        clock_ms: Callable[[], int],
        batch: int = 5_000,
    ) -> None:
        self.store, self.info, self._append = store, info, append
        self._clock, self._batch = clock_ms, batch
        state = store.load_alert_state(info.log_id)
        self.cursor = int(state.pop(CURSOR, "0"))
        self.rules = rules.for_tenant(info.name)
        self.evaluator = Evaluator(self.rules, state)
        self._read: dict[str, bool] = {}  # personal value pointer → whether rules read it
        self.fired = 0
        self.warmed = self._warm()

    # ---- start-up
    def _warm(self) -> int:
        """Rebuild the windows from the log's last ``max_window`` before the cursor."""
        span = self.evaluator.max_window_ms
        if span == 0 or self.cursor == 0:
            return 0
        edge = self.store.get_entry(self.info.log_id, self.cursor - 1).index.received_at_ms
        start = self._first_received_after(edge - span)
        for at in range(start, self.cursor, self._batch):
            upto = min(at + self._batch, self.cursor)
            for seq, received_at, leaf, personal in self.store.read_leaves(
                self.info.log_id, at, upto
            ):
                event = _event(leaf, self._needed(personal))
                if event is not None and not _is_alert(event):
                    self.evaluator.warm(event, seq, received_at)
        return self.cursor - start

    def _first_received_after(self, edge: int) -> int:
        """The lowest seq before the cursor received after ``edge`` (received_at does not
        decrease along the log), by binary search."""
        low, high = 0, self.cursor
        while low < high:
            middle = (low + high) // 2
            if self.store.get_entry(self.info.log_id, middle).index.received_at_ms > edge:
                high = middle
            else:
                low = middle + 1
        return low

    # ---- following
    def step(self) -> tuple[int, list[DeliveryRow]]:
        """Evaluate the next batch; return how many entries it read and the deliveries it
        enqueued (both 0/empty when the log has nothing new)."""
        log_id = self.info.log_id
        end = min(self.store.tree_size(log_id), self.cursor + self._batch)
        if end <= self.cursor:
            return 0, []
        firings: list[Firing] = []
        deliveries: list[DeliveryRow] = []
        now = self._clock()
        evaluate = self.evaluator.evaluate
        for seq, received_at, leaf, personal in self.store.read_leaves(log_id, self.cursor, end):
            event = _event(leaf, self._needed(personal) if personal else personal)
            if event is None:
                continue
            kind = event.get("event_type")
            if type(kind) is str and kind.startswith("alert."):  # not evaluated
                if kind == ALERT_EVENT_TYPE:
                    deliveries += deliveries_for(
                        self.info.name, seq, event, self._sink_names(), now
                    )
                continue
            firings += evaluate(event, seq, received_at)
        self._record(firings)
        changes = self.evaluator.take_changes()
        changes[CURSOR] = str(end)
        self.store.save_alert_state(log_id, changes, deliveries)
        read, self.cursor = end - self.cursor, end
        return read, deliveries

    def _needed(self, personal: Sequence[PersonalValue]) -> list[PersonalValue]:
        """The personal values some rule may read: only those are restored (and checked
        against their commitments); the others stay null, as if erased."""
        read = self._read
        needed = []
        for item in personal:
            wanted = read.get(item.pointer)
            if wanted is None:
                wanted = self.rules.may_read(item.pointer)
                if len(read) < 10_000:
                    read[item.pointer] = wanted
            if wanted:
                needed.append(item)
        return needed

    def tick(self, now_ms: int) -> int:
        """Absence rules whose deadline passed; call only when the follower is caught up."""
        firings = self.evaluator.due(now_ms)
        self._record(firings)
        changes = self.evaluator.take_changes()
        if changes:
            self.store.save_alert_state(self.info.log_id, changes)
        return len(firings)

    def _sink_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.rules.sinks)

    def _record(self, firings: Sequence[Firing]) -> None:
        """Append the alerts and wait for their commit. An alert already recorded with other
        content (the rules changed before a replay) is left as recorded."""
        if not firings:
            return
        now = self._clock()
        events: list[Event] = []
        for firing in firings:
            try:
                events.append(validate_event(alert_event(firing, self.info.origin), now_ms=now))
            except InvalidEvent as exc:  # never stall the log on one alert that cannot be
                log.error(  # recorded (an event value beyond the limits, say)
                    "log %s: alert %s cannot be recorded: %s",
                    self.info.name,
                    firing.rule.id,
                    exc.message,
                )
        if not events:
            return
        try:
            self._append(events)
        except Conflict:
            for event in events:
                try:
                    self._append([event])
                except Conflict as exc:
                    log.warning("log %s: alert kept as first recorded: %s", self.info.name, exc)
        self.fired += len(events)
        for firing in firings:
            log.warning(
                "log %s: alert %s (%s) fired for %s",
                self.info.name,
                firing.rule.id,
                firing.rule.severity,
                firing.group or "-",
            )


def _is_alert(event: dict[str, Any]) -> bool:
    kind = event.get("event_type")
    return type(kind) is str and kind.startswith("alert.")


def _event(leaf: bytes, personal: Sequence[PersonalValue]) -> dict[str, Any] | None:
    """The entry's event, personal values restored (each checked against its commitment).
    The rest of the leaf is only parsed: ``indelible verify``, not the follower, checks
    leaves; one that cannot be read at all goes through :func:`decode` for its error."""
    try:
        entry = orjson.loads(leaf)
    except orjson.JSONDecodeError:
        entry = None
    try:
        if type(entry) is dict and type(entry.get("event")) is dict:
            return restore_personal(entry, personal)
        return decode(leaf, personal).event
    except IndelibleError as exc:  # verify names it; the follower must not stop on it
        log.error("an entry cannot be read for alerting: [%s] %s", exc.code, exc.message)
        return None
