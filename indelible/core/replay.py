"""Replay: rebuild one record's state at a time T from the before/after changes of its events.

Each event that touched the record becomes a :class:`Step` (its ``seq``, ``occurred_at`` in
milliseconds, ``action`` and ``changes``). :func:`replay` applies the steps that occurred at or
before ``at_ms`` and returns an :class:`EntityState`. The rules:

* **Order.** Only steps with ``occurred_at_ms <= at_ms`` are applied, in order of
  ``(occurred_at_ms, seq)``: ties on the time are broken by ``seq``, whatever the input order.
  The changes of one step are applied in the order they are listed, so a field named twice in
  one event is changed twice.
* **Used steps.** A step is used (and its ``seq`` listed in ``seqs``) when it has changes or its
  action is ``create`` or ``delete``. Any other step without changes (a ``read``, say) is skipped.
* **Existence.** ``exists`` starts as ``None`` (nothing replayed). A ``create`` sets it to True,
  a ``delete`` to False, after the step's changes are applied. Any other used step sets it to
  True only if it was still ``None`` (the history starts mid-life); after a delete it stays
  False, and its changes are applied all the same, without a gap. A delete removes only the
  fields its changes remove: the other fields keep their last values.
* **Completeness.** ``complete`` is True when the first used step is a ``create``: the history is
  known from the creation, so a field never set is absent (:data:`MISSING`).
* **Gaps.** A change that gives ``before`` is checked against the replayed value of its field:

  - a field already set or removed by an applied change has that value (:data:`MISSING` once
    removed);
  - a field never touched is :data:`MISSING` when the replay is complete; otherwise (history
    starting mid-life) it silently adopts ``before``, so it never makes a gap;
  - :data:`MISSING` matches only ``before: null``; any other value matches only an equal one.

  A mismatch is recorded as a :class:`Gap` carrying the replayed value (``expected``) and the
  change's ``before`` (``found``). A gap never stops the replay: the change is applied anyway.
  The replay reports what the log says; it never hides a disagreement, nor guesses a fix.
* **Applying.** A change that gives ``after`` sets the field to it; a change without ``after``
  removes the field.
* **Equality** is JSON equality: two values are equal when their RFC 8785 (JCS) bytes are, so
  ``1`` equals ``1.0`` and objects compare whatever their key order, but ``true`` is not ``1``
  and ``"1"`` is not ``1``.

Nothing here reads a clock: ``at_ms`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from indelible.core.encoding import canonical

__all__ = [
    "MISSING",
    "Change",
    "EntityState",
    "Gap",
    "Step",
    "replay",
]

_CREATE = "create"
_DELETE = "delete"


class _Missing(Enum):
    """The type of :data:`MISSING` (an enum, so the sentinel survives copy and pickle)."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing.MISSING
"""No value: a change's absent ``before`` or ``after`` key, or a field that is not set."""


class Change(NamedTuple):
    """One item of an event's ``changes``; :data:`MISSING` where the key was absent."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Step:
    """One event that touched the record."""

    seq: int
    occurred_at_ms: int
    action: str
    changes: tuple[Change, ...]

    @classmethod
    def from_event(cls, seq: int, occurred_at_ms: int, event: Mapping[str, Any]) -> Step:
        """The step of ``event`` (a dict in the Event format).

        Defensive about events that were not validated: a non-string action reads as ``""``,
        a ``changes`` that is not a list as no changes, and change items that are not objects
        with a string ``field`` are skipped.
        """
        action = event.get("action")
        items = event.get("changes")
        changes = tuple(_changes(items)) if type(items) is list else ()
        return cls(seq, occurred_at_ms, action if type(action) is str else "", changes)

    @property
    def used(self) -> bool:
        """Whether the step counts in a replay: it has changes, or creates or deletes."""
        return bool(self.changes) or self.action in (_CREATE, _DELETE)


def _changes(items: list[Any]) -> Iterable[Change]:
    for item in items:
        if type(item) is dict and type(item.get("field")) is str:
            yield Change(item["field"], item.get("before", MISSING), item.get("after", MISSING))


@dataclass(frozen=True, slots=True)
class Gap:
    """A change whose ``before`` disagrees with the replayed value of its field."""

    seq: int
    field: str
    expected: Any
    found: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``expected`` or ``found`` is left out when it is :data:`MISSING`."""
        out: dict[str, Any] = {"seq": self.seq, "field": self.field}
        if self.expected is not MISSING:
            out["expected"] = self.expected
        if self.found is not MISSING:
            out["found"] = self.found
        return out


@dataclass(frozen=True, slots=True)
class EntityState:
    """A record's state at ``at_ms``, as replayed from its steps."""

    at_ms: int
    exists: bool | None
    fields: dict[str, Any]
    seqs: tuple[int, ...]
    gaps: tuple[Gap, ...]
    complete: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists for the tuples, each gap as :meth:`Gap.to_dict`."""
        return {
            "at_ms": self.at_ms,
            "exists": self.exists,
            "fields": dict(self.fields),
            "seqs": list(self.seqs),
            "gaps": [gap.to_dict() for gap in self.gaps],
            "complete": self.complete,
        }


def replay(steps: Iterable[Step], at_ms: int) -> EntityState:
    """The state at ``at_ms`` of the record ``steps`` touched (rules in the module docstring)."""
    chosen = sorted((s for s in steps if s.occurred_at_ms <= at_ms), key=_order)
    used = [step for step in chosen if step.used]
    complete = bool(used) and used[0].action == _CREATE
    values: dict[str, Any] = {}
    gaps: list[Gap] = []
    exists: bool | None = None
    for step in used:
        gaps.extend(_apply(values, step, complete))
        exists = _exists_after(exists, step.action)
    fields = {name: value for name, value in values.items() if value is not MISSING}
    seqs = tuple(step.seq for step in used)
    return EntityState(at_ms, exists, fields, seqs, tuple(gaps), complete)


def _order(step: Step) -> tuple[int, int]:
    return step.occurred_at_ms, step.seq


def _apply(values: dict[str, Any], step: Step, complete: bool) -> list[Gap]:
    """Check and apply the changes of ``step`` to ``values``; the gaps found on the way."""
    gaps = []
    for change in step.changes:
        if change.before is not MISSING:
            unknown = MISSING if complete else change.before
            replayed = values.get(change.field, unknown)
            if not _matches(replayed, change.before):
                gaps.append(Gap(step.seq, change.field, replayed, change.before))
        values[change.field] = change.after
    return gaps


def _matches(replayed: Any, before: Any) -> bool:
    """JSON equality, with :data:`MISSING` (not set) matching only ``null``."""
    if replayed is MISSING:
        return before is None
    return canonical(replayed) == canonical(before)


def _exists_after(exists: bool | None, action: str) -> bool | None:
    if action == _CREATE:
        return True
    if action == _DELETE:
        return False
    return True if exists is None else exists
