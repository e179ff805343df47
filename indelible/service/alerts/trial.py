"""``indelible rules test``: which events of a file would fire which rule.

Each line of the file is an event, or an entry as ``GET /v1/events/export`` writes it
(``{"seq", "received_at", "event"}``). The evaluator runs as the live follower does, on the
entry's ``received_at`` (for a bare event, its ``occurred_at``), and after the last line it
checks absence rules at ``now_ms`` (default: the last event's time).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from indelible.core.alerting import Evaluator
from indelible.core.event import parse_batch, parse_timestamp
from indelible.core.rules import RuleSet
from indelible.errors import FieldError, InvalidEvent

__all__ = ["TrialReport", "try_rules"]


@dataclass
class TrialReport:
    events: int = 0
    fired: list[dict[str, Any]] = field(default_factory=list)
    suppressed: int = 0

    def to_dict(self) -> dict[str, Any]:
        counts = Counter(item["rule"] for item in self.fired)
        return {
            "events": self.events,
            "alerts": len(self.fired),
            "suppressed": self.suppressed,
            "by_rule": dict(sorted(counts.items())),
            "fired": self.fired,
        }


def _time(text: Any, index: int, where: str) -> int:
    try:
        return parse_timestamp(text)
    except (TypeError, ValueError) as exc:
        error = FieldError(where, "format", f"not a UTC timestamp: {exc}", index)
        raise InvalidEvent([error]) from None


def try_rules(rules: RuleSet, raw: bytes, *, now_ms: int | None = None) -> TrialReport:
    """Evaluate every event of ``raw`` (NDJSON or a JSON array) in order."""
    items = parse_batch(raw, max_bytes=1 << 30, max_items=10_000_000)
    evaluator = Evaluator(rules)
    report = TrialReport()
    last = 0
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise InvalidEvent([FieldError("", "type", "each line is an object", index)])
        inner = item.get("event")
        event: dict[str, Any] = inner if type(inner) is dict else item
        if "received_at" in item and event is not item:
            at = _time(item["received_at"], index, "/received_at")
        else:
            at = _time(event.get("occurred_at"), index, "/occurred_at")
        given = item.get("seq")
        seq: int = given if type(given) is int else index
        if index == 0:
            evaluator.due(at)  # absence rules start watching from the first event
        last = max(last, at)
        for firing in evaluator.evaluate(event, seq, at):
            report.fired.append(
                {
                    "line": index + 1,
                    "seq": seq,
                    "event_id": event.get("event_id"),
                    "event_type": event.get("event_type"),
                    "rule": firing.rule.id,
                    "severity": firing.rule.severity,
                    "group": firing.group,
                    "detail": firing.detail,
                }
            )
    for firing in evaluator.due(now_ms if now_ms is not None else last):
        report.fired.append(
            {
                "line": None,
                "seq": None,
                "event_id": None,
                "event_type": None,
                "rule": firing.rule.id,
                "severity": firing.rule.severity,
                "group": firing.group,
                "detail": firing.detail,
            }
        )
    report.events = len(items)
    report.suppressed = evaluator.suppressed
    return report
