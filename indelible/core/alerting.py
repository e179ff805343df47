"""Evaluating alert rules over a log's events, in seq order, with time passed in.

:class:`Evaluator` holds what the rules remember: sliding windows (``count``, ``sum``), the
values each group was seen with (``first_seen``), when each (rule, group) may fire again
(de-duplication), each (rule, group)'s firings in the last hour (rate limit) and the days an
awaited event came (``absence``). Windows are rebuilt after a restart by feeding the
window's span of the log to :meth:`Evaluator.warm`; everything else is kept as string state:
the evaluator is built from it and hands back what changed (:meth:`Evaluator.take_changes`)
for the caller to store in the same transaction as its cursor.

Time: windows, de-duplication and rate limits run on the log's clock, the ``received_at`` of
each entry (non-decreasing in seq order); schedules and absence read the event's own
``occurred_at``. ``now_ms`` for :meth:`Evaluator.due` is passed in.

Alert ids are UUIDv8 from the log's origin, the rule, the group and what triggered it (the
entry's seq, or the day of an absence), so evaluating the same entries again yields the same
alerts: appended again they are the same event, which the log's event_id idempotency keeps
once.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson

from indelible.core.ids import uuid8_sha256
from indelible.core.rules import MISSING, Many, Rule, RuleSet, number
from indelible.core.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "ALERT_EVENT_TYPE",
    "Evaluator",
    "Firing",
    "alert_event",
    "alert_id",
]

ALERT_EVENT_TYPE = "alert.fired"
SYSTEM_ACTOR = {"id": "indelible", "type": "system", "name": "Indelible"}
_HOUR_MS = 3_600_000
_SWEEP_EVERY = 65_536
_MAX_SEQS = 50
_ABSENCE_LOOKBACK_DAYS = 7
_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule fired: for ``group``, at ``at_ms`` on the log's clock, because of the entry
    ``seq`` (None for an absence, whose ``group`` is the day)."""

    rule: Rule
    group: str
    at_ms: int
    seq: int | None = None
    event: Mapping[str, Any] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def alert_id(origin: str, rule_id: str, group: str, trigger: str) -> str:
    """A UUIDv8 (RFC 9562) from the first 128 bits of SHA-256 over the alert's identity."""
    return uuid8_sha256(_SEP.join(("indelible-alert-v1", origin, rule_id, group, trigger)).encode())


def alert_event(firing: Firing, origin: str) -> dict[str, Any]:
    """The ``alert.fired`` event of a firing: a function of the firing alone."""
    rule = firing.rule
    trigger = str(firing.seq) if firing.seq is not None else f"day:{firing.group}"
    data: dict[str, Any] = {
        "rule": rule.id,
        "title": rule.title,
        "severity": rule.severity,
        "kind": rule.kind,
        "group": firing.group,
        "sinks": list(rule.sinks),
        **firing.detail,
    }
    if firing.seq is not None and firing.event is not None:
        data["seq"] = firing.seq
        data["trigger"] = {
            key: firing.event[key]
            for key in ("event_id", "event_type", "occurred_at", "actor", "target")
            if key in firing.event
        }
    return {
        "event_id": alert_id(origin, rule.id, firing.group, trigger),
        "event_type": ALERT_EVENT_TYPE,
        "occurred_at": format_timestamp(firing.at_ms),
        "actor": dict(SYSTEM_ACTOR),
        "action": "alert",
        "outcome": "success",
        "target": {"type": "alert_rule", "id": rule.id},
        "reason": rule.title,
        "context": {"source": "alerts"},
        "data": data,
    }


class _Window:
    """One group's entries in a sliding window: (time, seq, value) and their running sum."""

    __slots__ = ("items", "total")

    def __init__(self) -> None:
        self.items: deque[tuple[int, int, float]] = deque()
        self.total = 0.0

    def add(self, at: int, seq: int, value: float, span: int) -> None:
        items = self.items
        items.append((at, seq, value))
        self.total += value
        edge = at - span
        while items[0][0] <= edge:
            self.total -= items.popleft()[2]
        if len(items) == 1:
            self.total = items[0][2]  # no drift once the window holds one entry again


class Evaluator:
    """The rules of one log, their state, and what changed since the last take."""

    def __init__(self, rules: RuleSet, state: Mapping[str, str] | None = None) -> None:
        self.rules = rules
        self._index: dict[str, list[Rule]] = {}
        self._any: list[Rule] = []
        for rule in rules.rules:
            if rule.event_types is None:
                self._any.append(rule)
            else:
                for event_type in rule.event_types:
                    self._index.setdefault(event_type, []).append(rule)
        self._by_type: dict[Any, tuple[Rule, ...]] = {}
        self._windows: dict[str, dict[str, _Window]] = {
            rule.id: {} for rule in rules.rules if rule.kind in ("count", "sum")
        }
        self._seen: dict[str, OrderedDict[str, list[str]]] = {}
        self._until: dict[str, int] = {}
        self._fired: dict[str, deque[int]] = {}
        self._absence: dict[str, dict[str, Any]] = {}
        self._changes: dict[str, str | None] = {}
        self._counter = 0
        self.suppressed = 0
        self._load(state or {})

    @property
    def max_window_ms(self) -> int:
        """The longest window of any count or sum rule: how far back :meth:`warm` must go."""
        return max((rule.window_ms for rule in self.rules.rules), default=0)

    # ---- state
    def _load(self, state: Mapping[str, str]) -> None:
        known = {rule.id: rule for rule in self.rules.rules}
        for key, value in state.items():
            kind, _, rest = key.partition(_SEP)
            rule_id, _, group = rest.partition(_SEP)
            rule = known.get(rule_id)
            if rule is None:
                continue
            if kind == "fs" and rule.kind == "first_seen":
                self._seen.setdefault(rule_id, OrderedDict())[group] = list(orjson.loads(value))
            elif kind == "dd":
                self._until[rule_id + _SEP + group] = int(value)
            elif kind == "rl":
                self._load_rate(rule, key, value, per_group=_SEP in rest)
            elif kind == "ab" and rule.kind == "absence":
                self._absence[rule_id] = dict(orjson.loads(value))

    def _load_rate(self, rule: Rule, key: str, value: str, *, per_group: bool) -> None:
        """A rate-limit entry: ``rl<SEP>rule<SEP>group``. One of the older per-rule form
        (``rl<SEP>rule``) is removed; its firing times carry over as the group ``""`` of a
        rule without ``group_by`` (the only group such a rule has) and are dropped otherwise."""
        times = deque(int(at) for at in orjson.loads(value))
        if per_group:
            self._fired[key.partition(_SEP)[2]] = times
            return
        self._changes[key] = None
        if not rule.group_by:
            slot = rule.id + _SEP
            self._fired[slot] = times
            self._changes["rl" + _SEP + slot] = orjson.dumps(list(times)).decode()

    def take_changes(self) -> dict[str, str | None]:
        """State keys changed since the last call: their new text, or None when removed."""
        changes, self._changes = self._changes, {}
        return changes

    # ---- evaluation
    def _rules_for(self, event_type: Any) -> tuple[Rule, ...]:
        found = self._by_type.get(event_type)
        if found is None:
            indexed = self._index.get(event_type, []) if type(event_type) is str else []
            found = tuple(indexed + self._any)
            if len(self._by_type) < 10_000:
                self._by_type[event_type] = found
        return found

    def evaluate(self, event: Mapping[str, Any], seq: int, at_ms: int) -> list[Firing]:
        """Every firing ``event`` (the entry ``seq``, received at ``at_ms``) causes."""
        rules = self._rules_for(event.get("event_type"))
        if not rules:
            return []
        self._counter += 1
        if self._counter % _SWEEP_EVERY == 0:
            self._sweep(at_ms)
        fired: list[Firing] = []
        for rule in rules:
            if rule.test(event):
                firing = self._check(rule, event, seq, at_ms)
                if firing is not None:
                    fired.append(firing)
        return fired

    def warm(self, event: Mapping[str, Any], seq: int, at_ms: int) -> None:
        """Feed an entry already evaluated before a restart: windows only, nothing fires."""
        for rule in self._rules_for(event.get("event_type")):
            if rule.kind in ("count", "sum") and rule.test(event):
                self._windowed(rule, event, seq, at_ms)

    def _check(self, rule: Rule, event: Mapping[str, Any], seq: int, at_ms: int) -> Firing | None:
        """The firing of ``rule`` for ``event`` once de-duplication and the rate limit let
        it through (its detail is built only then)."""
        kind = rule.kind
        if kind == "match":
            group = rule.group(event) or ""
            if not self._admit(rule, group, at_ms):
                return None
            return Firing(rule, group, at_ms, seq, event)
        if kind == "first_seen":
            return self._first_seen(rule, event, seq, at_ms)
        if kind == "absence":
            self._arrived(rule, event)
            return None
        found = self._windowed(rule, event, seq, at_ms)
        if found is None:
            return None
        group, window = found
        measure = len(window.items) if kind == "count" else window.total
        if measure < rule.threshold or not self._admit(rule, group, at_ms):
            return None
        detail: dict[str, Any] = {
            "count": len(window.items),
            "threshold": _plain(rule.threshold),
            "window_s": rule.window_ms / 1000,
            "seqs": [item[1] for item in list(window.items)[-_MAX_SEQS:]],
        }
        if kind == "sum":
            detail["sum"] = _plain(round(window.total, 6))
            detail["field"] = rule.field
        return Firing(rule, group, at_ms, seq, event, detail)

    def _windowed(
        self, rule: Rule, event: Mapping[str, Any], seq: int, at_ms: int
    ) -> tuple[str, _Window] | None:
        group = rule.group(event)
        if group is None:
            return None
        if rule.kind == "sum":
            assert rule.value is not None
            amount = number(rule.value(event))
            if amount is None:
                return None
        else:
            amount = 1.0
        groups = self._windows[rule.id]
        window = groups.get(group)
        if window is None:
            window = groups[group] = _Window()
        window.add(at_ms, seq, amount, rule.window_ms)
        return group, window

    def _first_seen(
        self, rule: Rule, event: Mapping[str, Any], seq: int, at_ms: int
    ) -> Firing | None:
        group = rule.group(event)
        assert rule.value is not None
        raw = rule.value(event)
        if group is None or raw is MISSING or raw is None or type(raw) in (dict, list, Many):
            return None
        value = str(raw)
        groups = self._seen.setdefault(rule.id, OrderedDict())
        known = groups.get(group)
        key = "fs" + _SEP + rule.id + _SEP + group
        if known is None:  # the group's first value is learned, not alerted on
            groups[group] = [value]
            self._changes[key] = orjson.dumps([value]).decode()
            if len(groups) > rule.max_groups:
                evicted, _ = groups.popitem(last=False)
                self._changes["fs" + _SEP + rule.id + _SEP + evicted] = None
            return None
        groups.move_to_end(group)
        if value in known:
            return None
        previous = list(known)
        known.append(value)
        del known[: -rule.max_values]
        self._changes[key] = orjson.dumps(known).decode()
        if not self._admit(rule, group, at_ms):
            return None
        detail = {"field": rule.field, "value": value, "known": previous[-10:]}
        return Firing(rule, group, at_ms, seq, event, detail)

    def _admit(self, rule: Rule, group: str, at_ms: int) -> bool:
        """De-duplication per (rule, group), then the rate limit per (rule, group) per hour."""
        if rule.dedup_ms:
            key = rule.id + _SEP + group
            until = self._until.get(key)
            if until is not None and at_ms < until:
                self.suppressed += 1
                return False
            self._until[key] = at_ms + rule.dedup_ms
            self._changes["dd" + _SEP + key] = str(at_ms + rule.dedup_ms)
        slot = rule.id + _SEP + group
        fired = self._fired.get(slot)
        if fired is None:
            fired = self._fired[slot] = deque()
        while fired and fired[0] <= at_ms - _HOUR_MS:
            fired.popleft()
        if len(fired) >= rule.max_per_hour:
            self.suppressed += 1
            return False
        fired.append(at_ms)
        self._changes["rl" + _SEP + slot] = orjson.dumps(list(fired)).decode()
        return True

    def _sweep(self, at_ms: int) -> None:
        """Forget windows that emptied out, de-duplication marks that expired and rate limits
        with no firing in the last hour (their stored rows too)."""
        for rule in self.rules.rules:
            groups = self._windows.get(rule.id)
            if groups:
                edge = at_ms - rule.window_ms
                for group in [g for g, w in groups.items() if w.items[-1][0] <= edge]:
                    del groups[group]
        for key in [key for key, until in self._until.items() if until <= at_ms]:
            del self._until[key]
            self._changes["dd" + _SEP + key] = None
        edge = at_ms - _HOUR_MS
        for key in [key for key, fired in self._fired.items() if not fired or fired[-1] <= edge]:
            del self._fired[key]
            self._changes["rl" + _SEP + key] = None

    # ---- absence
    def _arrived(self, rule: Rule, event: Mapping[str, Any]) -> None:
        text = event.get("occurred_at")
        try:
            occurred = parse_timestamp(text) if type(text) is str else None
        except ValueError:
            occurred = None
        if occurred is None:
            return
        local = datetime.fromtimestamp(occurred / 1000, UTC).astimezone(rule.zone)
        if local.hour * 60 + local.minute >= rule.deadline_minute:
            return
        state = self._absence.setdefault(rule.id, {"checked": None, "seen": []})
        day = local.date().isoformat()
        if day not in state["seen"]:
            state["seen"] = sorted([*state["seen"], day])[-(_ABSENCE_LOOKBACK_DAYS + 2) :]
            self._changes["ab" + _SEP + rule.id] = orjson.dumps(state).decode()

    def due(self, now_ms: int) -> list[Firing]:
        """Absence rules whose deadline (plus grace) passed by ``now_ms`` with no event.

        Call it only once every entry received before ``now_ms`` was evaluated. A rule seen
        for the first time starts from the latest deadline without firing for it (the days
        before it were not watched)."""
        fired: list[Firing] = []
        for rule in self.rules.rules:
            if rule.kind != "absence":
                continue
            latest = _latest_due(rule, now_ms)
            state = self._absence.setdefault(rule.id, {"checked": None, "seen": []})
            checked = state["checked"]
            if checked is not None and latest.isoformat() <= checked:
                continue
            if checked is not None:
                day = max(date.fromisoformat(checked), latest - timedelta(_ABSENCE_LOOKBACK_DAYS))
                while day < latest:
                    day += timedelta(1)
                    name = day.isoformat()
                    if day.weekday() in rule.days and name not in state["seen"]:
                        fired.append(self._absent(rule, day))
            state["checked"] = latest.isoformat()
            self._changes["ab" + _SEP + rule.id] = orjson.dumps(state).decode()
        return fired

    def _absent(self, rule: Rule, day: date) -> Firing:
        at = _deadline_ms(rule, day) + rule.grace_ms
        detail = {
            "date": day.isoformat(),
            "by": f"{rule.deadline_minute // 60:02d}:{rule.deadline_minute % 60:02d}",
            "timezone": rule.timezone,
        }
        return Firing(rule, day.isoformat(), at, None, None, detail)


def _deadline_ms(rule: Rule, day: date) -> int:
    clock = time(rule.deadline_minute // 60, rule.deadline_minute % 60)
    return int(datetime.combine(day, clock, tzinfo=rule.zone).timestamp() * 1000)


def _latest_due(rule: Rule, now_ms: int) -> date:
    """The newest day whose deadline plus grace is at or before ``now_ms`` (any weekday)."""
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(rule.zone).date()
    if _deadline_ms(rule, today) + rule.grace_ms <= now_ms:
        return today
    return today - timedelta(1)


def _plain(value: float) -> int | float:
    """A whole number as an int, so the alert's JSON reads 21, not 21.0."""
    return int(value) if value == int(value) else value
