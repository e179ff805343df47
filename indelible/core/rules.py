"""Alert rules: validation of a rules document and its compiled conditions.

A rules document is the mapping a rules file parses to (YAML is parsed at the edge, see
``docs/alerts.md``). :func:`parse_rules` checks every part of it, reports every problem at
once (:class:`~indelible.errors.InvalidRules`, each problem naming its place as a JSON
Pointer), and returns a :class:`RuleSet` whose conditions are compiled to plain functions of
an event dict. Time zones are resolved by a function passed in; nothing here reads a file or
a clock.

Rule kinds: ``match`` (each matching event), ``count`` and ``sum`` (over a sliding window,
per group), ``first_seen`` (a value new for its group) and ``absence`` (no matching event by
a time of day). Schedules (weekly time-of-day windows in a time zone, or absolute change
windows) restrict any rule with ``inside``/``outside``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from indelible.core.conditions import (
    MISSING,
    PATH,
    Getter,
    Many,
    Problems,
    Test,
    compile_when,
    getter,
    number,
    resolve,
    strings,
)
from indelible.core.event import parse_pointer
from indelible.core.timestamps import parse_timestamp
from indelible.errors import FieldError, InvalidRules

__all__ = [
    "KINDS",
    "MISSING",
    "SEVERITIES",
    "Many",
    "Rule",
    "RuleSet",
    "Schedule",
    "SinkSpec",
    "Window",
    "getter",
    "number",
    "parse_duration",
    "parse_rules",
    "resolve",
]

KINDS = ("match", "count", "sum", "first_seen", "absence")
SEVERITIES = ("info", "low", "medium", "high", "critical")
SINK_TYPES = ("webhook", "slack", "email")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"([0-9]{1,9})(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_RULE_KEYS = {
    "match": frozenset({"group_by"}),
    "count": frozenset({"window", "threshold", "group_by"}),
    "sum": frozenset({"window", "threshold", "group_by", "field"}),
    "first_seen": frozenset({"group_by", "field", "max_values", "max_groups"}),
    "absence": frozenset({"by", "timezone", "days", "grace"}),
}
_COMMON_KEYS = frozenset(
    {"id", "title", "description", "severity", "kind", "when", "inside", "outside"}
    | {"dedup", "max_per_hour", "sinks", "tenants", "enabled"}
)
_TOP_KEYS = frozenset(
    {"version", "packs", "schedules", "sinks", "rules", "overrides", "disable", "defaults"}
)


def parse_duration(text: Any) -> int:
    """``90s``, ``10m``, ``2h``, ``1d``, ``500ms`` (or a number of seconds) in milliseconds."""
    if type(text) is int and text >= 0:
        return text * 1000
    if type(text) is str:
        found = _DURATION.fullmatch(text)
        if found:
            return int(found.group(1)) * _UNIT_MS[found.group(2)]
    raise ValueError("must be a duration such as 90s, 10m, 2h or 1d")


def _clock(text: Any) -> int:
    found = _CLOCK.fullmatch(text) if type(text) is str else None
    if found is None:
        raise ValueError("must be a time of day HH:MM (00:00 to 23:59)")
    return int(found.group(1)) * 60 + int(found.group(2))


def _days(value: Any) -> frozenset[int]:
    items = [value] if type(value) is str else value
    if type(items) is not list or not items:
        raise ValueError(f"must be a day or a list of days ({', '.join(_DAYS)})")
    days: set[int] = set()
    for item in items:
        if item not in _DAYS:
            raise ValueError(f"{item!r} is not a day ({', '.join(_DAYS)})")
        days.add(_DAYS.index(item))
    return frozenset(days)


# -- schedules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """A weekly window (``days``, ``from``-``to`` in minutes of the day; ``to`` at or before
    ``from`` runs past midnight into the next day) or an absolute one (``start``-``end``)."""

    days: frozenset[int] = frozenset(range(7))
    start_minute: int = 0
    end_minute: int = 0
    start_ms: int | None = None
    end_ms: int | None = None

    def contains(self, ms: int, weekday: int, minute: int) -> bool:
        if self.start_ms is not None and self.end_ms is not None:
            return self.start_ms <= ms < self.end_ms
        if self.start_minute < self.end_minute:
            return weekday in self.days and self.start_minute <= minute < self.end_minute
        if minute >= self.start_minute:
            return weekday in self.days
        return minute < self.end_minute and (weekday - 1) % 7 in self.days


@dataclass(frozen=True, slots=True)
class Schedule:
    """Named windows in one time zone: business hours, approved change windows."""

    name: str
    timezone: str
    zone: tzinfo
    windows: tuple[Window, ...]

    def contains(self, ms: int) -> bool:
        local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.zone)
        weekday, minute = local.weekday(), local.hour * 60 + local.minute
        return any(window.contains(ms, weekday, minute) for window in self.windows)


# -- the model ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """A notification sink as the rules file names it; the edge builds the sender."""

    name: str
    type: str
    options: Mapping[str, Any]


def _no_group(event: Mapping[str, Any]) -> str | None:
    return ""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: str
    kind: str
    test: Test
    event_types: tuple[str, ...] | None  # the exact event types it can match; None: any
    group_by: tuple[str, ...] = ()
    group: Callable[[Mapping[str, Any]], str | None] = _no_group
    window_ms: int = 0
    threshold: float = 0.0
    field: str | None = None
    value: Getter | None = None
    dedup_ms: int = 0
    max_per_hour: int = 60
    sinks: tuple[str, ...] = ()
    tenants: tuple[str, ...] | None = None
    description: str = ""
    max_values: int = 20
    max_groups: int = 100_000
    deadline_minute: int = 0
    timezone: str = "UTC"
    zone: tzinfo = UTC
    days: frozenset[int] = frozenset(range(7))
    grace_ms: int = 0
    reads: tuple[str, ...] = ()  # the field paths of its conditions, group_by and field

    def __repr__(self) -> str:
        return f"Rule({self.id!r}, kind={self.kind!r})"

    def applies_to(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    sinks: tuple[SinkSpec, ...] = ()
    schedules: tuple[Schedule, ...] = ()

    def for_tenant(self, tenant: str) -> RuleSet:
        kept = tuple(rule for rule in self.rules if rule.applies_to(tenant))
        return RuleSet(kept, self.sinks, self.schedules)

    def rule(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    def may_read(self, pointer: str) -> bool:
        """Whether a rule may read the value at the JSON Pointer ``pointer`` of an event (or
        a value inside it, or one holding it): a personal value the rules need restored.
        ``event_type`` and ``occurred_at`` are always read; a pointer that is not one, or
        that goes through an array index before leaving every path, counts as read."""
        tokens = parse_pointer(pointer)
        if tokens is None:
            return True
        paths = {"event_type", "occurred_at"}.union(*(rule.reads for rule in self.rules))
        return any(_overlaps(tokens, path.split(".")) for path in paths)


# -- validation -----------------------------------------------------------------------------


def parse_rules(
    document: Any,
    *,
    zone: Callable[[str], tzinfo],
    packs: Mapping[str, Any] | None = None,
) -> RuleSet:
    """Validate a rules document; return the compiled rules or raise ``InvalidRules``.

    ``zone`` turns an IANA time zone name into a tzinfo (raising ``ValueError`` for an
    unknown one); ``packs`` maps each shipped pack's name to its document.
    """
    problems = Problems()
    if type(document) is not dict:
        raise InvalidRules([FieldError("", "type", "a rules document must be a mapping")])
    for key in sorted(set(document) - _TOP_KEYS):
        problems.add(f"/{key}", "unknown", f"unknown key (expected one of {sorted(_TOP_KEYS)})")
    if document.get("version", 1) != 1:
        problems.add("/version", "value", "only version 1 is understood")
    raw_rules, raw_schedules = _with_packs(document, packs or {}, problems)
    schedules = _schedules(raw_schedules, zone, problems)
    sinks = _sinks(document.get("sinks", []), problems)
    defaults = document.get("defaults", {})
    if type(defaults) is not dict or set(defaults) - {"sinks", "severity"}:
        problems.add("/defaults", "type", "must be a mapping of sinks and severity")
        defaults = {}
    rules = _rules(raw_rules, document, defaults, schedules, sinks, zone, problems)
    if problems.errors:
        raise InvalidRules(problems.errors)
    return RuleSet(tuple(rules), tuple(sinks.values()), tuple(schedules.values()))


def _with_packs(
    document: dict[str, Any], packs: Mapping[str, Any], problems: Problems
) -> tuple[list[tuple[str, Any]], dict[str, tuple[str, Any]]]:
    """The rules (with where each came from) and schedules: the packs' first, then the
    document's, which replace a pack's schedule of the same name."""
    rules: list[tuple[str, Any]] = []
    schedules: dict[str, tuple[str, Any]] = {}
    names = document.get("packs", [])
    if type(names) is not list:
        problems.add("/packs", "type", "must be a list of pack names")
        names = []
    for index, name in enumerate(names):
        pack = packs.get(name) if type(name) is str else None
        if type(pack) is not dict:
            problems.add(f"/packs/{index}", "unknown", f"no shipped pack {name!r}")
            continue
        _collect(pack, f"pack {name}", rules, schedules, problems)
    _collect(document, "", rules, schedules, problems)
    return rules, schedules


def _collect(
    document: dict[str, Any],
    source: str,
    rules: list[tuple[str, Any]],
    schedules: dict[str, tuple[str, Any]],
    problems: Problems,
) -> None:
    found = document.get("rules", [])
    if type(found) is not list:
        problems.add(f"{source}/rules", "type", "must be a list of rules")
        found = []
    rules.extend((f"{source}/rules/{index}", rule) for index, rule in enumerate(found))
    named = document.get("schedules", {})
    if type(named) is not dict:
        problems.add(f"{source}/schedules", "type", "must be a mapping of name to schedule")
        named = {}
    for name, spec in named.items():
        schedules[name] = (f"{source}/schedules/{name}", spec)


def _schedules(
    raw: dict[str, tuple[str, Any]], zone: Callable[[str], tzinfo], problems: Problems
) -> dict[str, Schedule]:
    found: dict[str, Schedule] = {}
    for name, (where, spec) in raw.items():
        if type(name) is not str or not _NAME.fullmatch(name):
            problems.add(where, "name", "a schedule name is 1-64 of a-z 0-9 _ -")
            continue
        if type(spec) is not dict or set(spec) - {"timezone", "windows"}:
            problems.add(where, "type", "a schedule is a mapping of timezone and windows")
            continue
        timezone = spec.get("timezone", "UTC")
        tz = _zone(timezone, zone, f"{where}/timezone", problems)
        windows = spec.get("windows")
        if type(windows) is not list or not windows:
            problems.add(f"{where}/windows", "type", "must be a non-empty list of windows")
            continue
        parsed = [_window(item, f"{where}/windows/{i}", problems) for i, item in enumerate(windows)]
        if tz is not None and all(window is not None for window in parsed):
            kept = tuple(window for window in parsed if window is not None)
            found[name] = Schedule(name, timezone, tz, kept)
    return found


def _zone(
    name: Any, zone: Callable[[str], tzinfo], where: str, problems: Problems
) -> tzinfo | None:
    try:
        if type(name) is not str:
            raise ValueError(name)
        return zone(name)
    except (ValueError, KeyError):
        problems.add(where, "timezone", f"{name!r} is not a known IANA time zone")
        return None


def _window(spec: Any, where: str, problems: Problems) -> Window | None:
    if type(spec) is not dict:
        problems.add(where, "type", "a window is a mapping")
        return None
    try:
        if "start" in spec or "end" in spec:
            if set(spec) != {"start", "end"}:
                raise ValueError("an absolute window has exactly start and end")
            start, end = _instant(spec["start"]), _instant(spec["end"])
            if end <= start:
                raise ValueError("end must be after start")
            return Window(start_ms=start, end_ms=end)
        if set(spec) - {"days", "from", "to"} or not {"from", "to"} <= set(spec):
            raise ValueError("a weekly window has from, to and optionally days")
        days = _days(spec["days"]) if "days" in spec else frozenset(range(7))
        start_minute, end_minute = _clock(spec["from"]), _clock(spec["to"])
    except ValueError as exc:
        problems.add(where, "window", str(exc))
        return None
    return Window(days, start_minute, end_minute)


def _instant(value: Any) -> int:
    if isinstance(value, datetime):  # YAML reads unquoted timestamps as datetimes
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if type(value) is not str:
        raise ValueError("start and end are RFC 3339 UTC timestamps")
    return parse_timestamp(value)


def _sinks(raw: Any, problems: Problems) -> dict[str, SinkSpec]:
    found: dict[str, SinkSpec] = {}
    if type(raw) is not list:
        problems.add("/sinks", "type", "must be a list of sinks")
        return found
    for index, spec in enumerate(raw):
        where = f"/sinks/{index}"
        if type(spec) is not dict:
            problems.add(where, "type", "a sink is a mapping")
            continue
        name, kind = spec.get("name"), spec.get("type")
        if type(name) is not str or not _NAME.fullmatch(name):
            problems.add(f"{where}/name", "name", "a sink name is 1-64 of a-z 0-9 _ -")
        elif name in found:
            problems.add(f"{where}/name", "duplicate", f"a second sink named {name!r}")
        elif kind not in SINK_TYPES:
            problems.add(f"{where}/type", "value", f"must be one of {', '.join(SINK_TYPES)}")
        else:
            options = {key: value for key, value in spec.items() if key not in ("name", "type")}
            found[name] = SinkSpec(name, kind, options)
    return found


def _rules(
    raw: list[tuple[str, Any]],
    document: dict[str, Any],
    defaults: dict[str, Any],
    schedules: dict[str, Schedule],
    sinks: dict[str, SinkSpec],
    zone: Callable[[str], tzinfo],
    problems: Problems,
) -> list[Rule]:
    overrides = document.get("overrides", {})
    if type(overrides) is not dict:
        problems.add("/overrides", "type", "must be a mapping of rule id to changed fields")
        overrides = {}
    disabled = document.get("disable", [])
    if type(disabled) is not list:
        problems.add("/disable", "type", "must be a list of rule ids")
        disabled = []
    seen: set[str] = set()
    rules: list[Rule] = []
    for where, spec in raw:
        if type(spec) is not dict:
            problems.add(where, "type", "a rule is a mapping")
            continue
        rule_id = spec.get("id")
        if type(rule_id) is not str or not _RULE_ID.fullmatch(rule_id):
            problems.add(f"{where}/id", "id", "a rule id is 1-128 of a-z 0-9 _ . - (lowercase)")
            continue
        if rule_id in seen:
            problems.add(f"{where}/id", "duplicate", f"a second rule with id {rule_id!r}")
            continue
        seen.add(rule_id)
        change = overrides.get(rule_id, {})
        if type(change) is not dict:
            problems.add(f"/overrides/{rule_id}", "type", "must be a mapping of fields")
            change = {}
        merged = {**spec, **change}
        if rule_id in disabled or merged.get("enabled", True) is False:
            continue
        rule = _rule(merged, where, defaults, schedules, sinks, zone, problems)
        if rule is not None:
            rules.append(rule)
    for rule_id in set(overrides) - seen:
        problems.add(f"/overrides/{rule_id}", "unknown", "overrides a rule that does not exist")
    return rules


def _rule(
    spec: dict[str, Any],
    where: str,
    defaults: dict[str, Any],
    schedules: dict[str, Schedule],
    sinks: dict[str, SinkSpec],
    zone: Callable[[str], tzinfo],
    problems: Problems,
) -> Rule | None:
    before = len(problems.errors)
    kind = spec.get("kind")
    if kind not in KINDS:
        problems.add(f"{where}/kind", "value", f"must be one of {', '.join(KINDS)}")
        return None
    for key in sorted(set(spec) - _COMMON_KEYS - _RULE_KEYS[kind]):
        problems.add(f"{where}/{key}", "unknown", f"not a field of a {kind} rule")
    options: dict[str, Any] = {"kind": kind, "id": spec["id"]}
    options["title"] = _text(spec.get("title", spec["id"]), f"{where}/title", problems)
    options["description"] = _text(spec.get("description", ""), f"{where}/description", problems)
    severity = spec.get("severity", defaults.get("severity", "medium"))
    if severity not in SEVERITIES:
        problems.add(f"{where}/severity", "value", f"must be one of {', '.join(SEVERITIES)}")
    options["severity"] = severity
    test, types = compile_when(spec.get("when", {}), f"{where}/when", problems)
    options["test"] = _scheduled(test, spec, where, schedules, problems)
    options["event_types"] = types
    options["sinks"] = _names(spec.get("sinks", defaults.get("sinks")), sinks, where, problems)
    tenants = spec.get("tenants")
    if tenants is not None and not strings(tenants):
        problems.add(f"{where}/tenants", "type", "must be a list of tenant names")
    options["tenants"] = tuple(tenants) if tenants is not None and strings(tenants) else None
    options["max_per_hour"] = _count(
        spec.get("max_per_hour", 60), f"{where}/max_per_hour", problems
    )
    _kind_options(kind, spec, where, options, zone, problems)
    options["dedup_ms"] = (
        _duration(spec["dedup"], f"{where}/dedup", problems)
        if "dedup" in spec
        else options.get("window_ms", 0)
    )
    if spec.get("enabled", True) is not True:
        problems.add(f"{where}/enabled", "type", "must be true or false")
    if len(problems.errors) > before:
        return None
    reads = [*_paths_in(spec.get("when", {})), *options.get("group_by", ())]
    options["reads"] = tuple(sorted({*reads, *filter(None, [options.get("field")])}))
    return Rule(**options)


def _kind_options(
    kind: str,
    spec: dict[str, Any],
    where: str,
    options: dict[str, Any],
    zone: Callable[[str], tzinfo],
    problems: Problems,
) -> None:
    if "group_by" in spec or kind == "first_seen":
        group_by = spec.get("group_by")
        paths = [group_by] if type(group_by) is str else group_by
        if not strings(paths) or not paths or not all(PATH.fullmatch(p) for p in paths):
            problems.add(f"{where}/group_by", "path", "must be a field path or a list of them")
        else:
            options["group_by"] = tuple(paths)
            options["group"] = _grouper(tuple(paths))
    if kind in ("count", "sum"):
        try:
            options["window_ms"] = parse_duration(spec.get("window"))
            if options["window_ms"] <= 0:
                raise ValueError("must be longer than 0")
        except ValueError as exc:
            problems.add(f"{where}/window", "duration", str(exc))
        threshold = (
            number(spec.get("threshold")) if type(spec.get("threshold")) is not str else None
        )
        if threshold is None or threshold <= 0:
            problems.add(f"{where}/threshold", "value", "must be a number greater than 0")
        options["threshold"] = threshold or 0.0
    if kind in ("sum", "first_seen"):
        path = spec.get("field")
        if type(path) is not str or not PATH.fullmatch(path):
            problems.add(f"{where}/field", "path", "must be a field path such as data.amount")
        else:
            options["field"], options["value"] = path, getter(path)
    if kind == "first_seen":
        options["max_values"] = _count(spec.get("max_values", 20), f"{where}/max_values", problems)
        options["max_groups"] = _count(
            spec.get("max_groups", 100_000), f"{where}/max_groups", problems
        )
    if kind == "absence":
        try:
            options["deadline_minute"] = _clock(spec.get("by"))
        except ValueError as exc:
            problems.add(f"{where}/by", "value", str(exc))
        timezone = spec.get("timezone", "UTC")
        options["timezone"] = timezone
        options["zone"] = _zone(timezone, zone, f"{where}/timezone", problems)
        try:
            options["days"] = _days(spec["days"]) if "days" in spec else frozenset(range(7))
        except ValueError as exc:
            problems.add(f"{where}/days", "value", str(exc))
        options["grace_ms"] = _duration(spec.get("grace", "5m"), f"{where}/grace", problems)
        if options["grace_ms"] > 12 * 3_600_000:
            problems.add(f"{where}/grace", "value", "must be at most 12h")


def _overlaps(tokens: tuple[str, ...], segments: list[str]) -> bool:
    """Whether a pointer's tokens and a path's segments name the same place, one inside the
    other, or may do so through an array (a path reaches every item of an array it meets)."""
    for token, segment in zip(tokens, segments, strict=False):
        if token.isdigit():
            return True
        if token != segment:
            return False
    return True


def _paths_in(spec: dict[str, Any]) -> list[str]:
    """The field paths a valid ``when`` reads."""
    found: list[str] = []
    for key, condition in spec.items():
        if key in ("any_of", "all_of"):
            for item in condition:
                found += _paths_in(item)
        elif key == "not":
            found += _paths_in(condition)
        else:
            found.append(key)
    return found


def _grouper(paths: tuple[str, ...]) -> Callable[[Mapping[str, Any]], str | None]:
    """The group key of an event (``actor.id=u-17``), or None when a field is missing."""
    getters = [(path, getter(path)) for path in paths]

    def group(event: Mapping[str, Any]) -> str | None:
        parts = []
        for path, get in getters:
            value = get(event)
            if value is MISSING or value is None or type(value) in (dict, list, Many):
                return None
            parts.append(f"{path}={value}")
        return ",".join(parts)

    return group


def _text(value: Any, where: str, problems: Problems) -> str:
    if type(value) is not str or len(value) > 1000:
        problems.add(where, "type", "must be text of at most 1000 characters")
        return ""
    return value


def _count(value: Any, where: str, problems: Problems) -> int:
    if type(value) is not int or value < 1:
        problems.add(where, "value", "must be a whole number of at least 1")
        return 1
    return value


def _duration(value: Any, where: str, problems: Problems) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        problems.add(where, "duration", str(exc))
        return 0


def _names(
    value: Any, sinks: dict[str, SinkSpec], where: str, problems: Problems
) -> tuple[str, ...]:
    if value is None:
        return tuple(sinks)
    if not strings(value):
        problems.add(f"{where}/sinks", "type", "must be a list of sink names")
        return ()
    for name in value:
        if name not in sinks:
            problems.add(f"{where}/sinks", "unknown", f"no sink named {name!r}")
    return tuple(value)


def _scheduled(
    test: Test,
    spec: dict[str, Any],
    where: str,
    schedules: dict[str, Schedule],
    problems: Problems,
) -> Test:
    for key, wanted in (("inside", True), ("outside", False)):
        if key not in spec:
            continue
        schedule = schedules.get(spec[key]) if type(spec[key]) is str else None
        if schedule is None:
            problems.add(f"{where}/{key}", "unknown", f"no schedule named {spec[key]!r}")
            continue
        test = _in_schedule(test, schedule, wanted)
    return test


def _in_schedule(test: Test, schedule: Schedule, wanted: bool) -> Test:
    def check(event: Mapping[str, Any]) -> bool:
        if not test(event):
            return False
        occurred = event.get("occurred_at")
        try:
            if type(occurred) is not str:
                return False
            return schedule.contains(parse_timestamp(occurred)) is wanted
        except ValueError:
            return False

    return check
