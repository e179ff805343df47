"""Alerting: events evaluated per second with the billing pack, and alert delivery delay.

- **evaluation**: the billing pack's ten rules (windows, first-seen, de-duplication and rate
  limits included) over the bench workload with pack-relevant events mixed in, from parsed
  events (the evaluator alone) and from the store (the follower: read, decode, evaluate, save
  state and cursor). The peer is ``rule-engine`` (PyPI), a Python expression matcher, testing
  the same rules' conditions on each event — stateless, so it does strictly less work.
- **delay**: a log served by a hub with the alert engine and a webhook sink to a receiver on
  loopback; trigger events are appended among background traffic, and the delay from the
  append's acknowledgement to the receiver getting the alert is measured (p50, p99). No peer
  engine is run for this; the row compares with the 2 s goal.

``python -m bench --alerts-only`` runs this alone.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import rule_engine
from rich.console import Console

from bench.measure import Row, settle_heap
from bench.workload import make_events
from indelible.core.alerting import Evaluator
from indelible.core.event import format_timestamp, validate_event
from indelible.service.alerts.engine import AlertEngine
from indelible.service.alerts.follower import LogFollower
from indelible.service.alerts.rulefile import parse_rules_text
from indelible.service.hub import Hub, HubOptions
from indelible.service.ingest import Sequencer
from indelible.service.logs import init_log
from indelible.sinks import build_sink
from indelible.storage import open_store

__all__ = ["alert_rows"]

GOAL_RATE = 50_000
GOAL_P99_MS = 2_000
FOLLOW_BATCH = 5_000

# The pack's conditions as rule-engine expressions (what each rule tests on one event).
PEER_RULES = [
    'event_type == "refund.created"',
    'event_type in ["credit.created", "credit.issued", "credit_note.created"] '
    'and actor.type == "user"',
    'event_type in ["invoice.created", "invoice.generated", "invoice.issued"]',
    'event_type =~ "^(price|plan)\\\\."',
    'context&.source == "db_trigger" and actor.type == "db_role"',
    'event_type in ["auth.login_failed", "audit.auth_failed"] '
    'or (action == "login" and outcome in ["failure", "denied"])',
    'event_type in ["role.granted", "role.assigned", "permission.granted", "user.role_changed"]',
    'event_type == "audit.read"',
    'event_type == "audit.exported"',
    'action == "login" and outcome == "success"',
]


def _mixed(count: int) -> list[dict[str, Any]]:
    """The shared workload with one event in five replaced by a pack-relevant one."""
    events = make_events(count)
    special = itertools.cycle(
        [
            ("refund.created", "create", "success", {}),
            ("credit.created", "create", "success", {"data": {"amount": "125.00"}}),
            ("auth.login", "login", "success", {"context": {"ip": "203.0.113.7"}}),
            ("auth.login", "login", "failure", {"context": {"ip": "198.51.100.4"}}),
            ("audit.read", "read", "success", {"data": {"results": 25}}),
            ("price.updated", "update", "success", {}),
            ("invoice.updated", "update", "success", {"context": {"source": "db_trigger"}}),
        ]
    )
    for index in range(0, count, 5):
        kind, action, outcome, extra = next(special)
        base = events[index]
        event = {key: base[key] for key in ("event_id", "occurred_at") if key in base}
        event.update(event_type=kind, action=action, outcome=outcome, **extra)
        event["actor"] = {"id": f"u-{index % 997}", "type": "user"}
        events[index] = event
    return events


PACK = parse_rules_text("packs: [billing]\n")


def _evaluator_rate(events: list[dict[str, Any]], budget: float) -> tuple[float, int]:
    evaluator = Evaluator(PACK)
    fired = done = 0
    started = time.perf_counter()
    at = 1_700_000_000_000
    while time.perf_counter() - started < budget:
        for seq, event in enumerate(events):
            fired += len(evaluator.evaluate(event, seq, at + seq))
        done += len(events)
        at += len(events) * 10
    return done / (time.perf_counter() - started), fired


def _peer_rate(events: list[dict[str, Any]], budget: float) -> float:
    rules = [rule_engine.Rule(text) for text in PEER_RULES]
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < budget:
        for event in events[:20_000]:
            for rule in rules:
                with contextlib.suppress(rule_engine.errors.EngineError):
                    rule.matches(event)
        done += 20_000
    return done / (time.perf_counter() - started)


def _follower_rate(events: list[dict[str, Any]], workdir: Path) -> float:
    """The follower over a SQLite log holding ``events``: read, decode, evaluate, save."""
    store = open_store(f"sqlite:///{workdir / 'follow.db'}")
    info = init_log(
        store,
        workdir / "keys",
        "bench",
        "bench.example/log",
        clock_ms=_now,
        random_bytes=os.urandom,
    ).info
    now = _now()
    valid = [validate_event(event, now_ms=now) for event in events]
    sequencer = Sequencer(store, info, clock_ms=_now, random_bytes=os.urandom)
    for at in range(0, len(valid), 1000):
        sequencer.append(valid[at : at + 1000])
    follower = LogFollower(
        store, info, PACK, append=sequencer.append, clock_ms=_now, batch=FOLLOW_BATCH
    )
    started = time.perf_counter()
    while follower.step()[0]:
        pass
    rate = follower.cursor / (time.perf_counter() - started)
    sequencer.close()
    store.close()
    return rate


def _now() -> int:
    return time.time_ns() // 1_000_000


class _Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                trigger = orjson.loads(body)["data"].get("trigger", {}).get("event_id")
                receiver.arrived.setdefault(trigger, time.perf_counter())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _delays(events: list[dict[str, Any]], workdir: Path, triggers: int) -> list[float]:
    """Milliseconds from each trigger's acknowledgement to its alert at the receiver."""
    receiver = _Receiver()
    rules = workdir / "rules.yaml"
    rules.write_text(
        "packs: [billing]\n"
        "overrides: {access.privilege_granted: {max_per_hour: 1000000}}\n"
        f"sinks: [{{name: hook, type: webhook, url: '{receiver.url}'}}]\n",
        encoding="utf-8",
    )
    store = open_store(f"sqlite:///{workdir / 'delay.db'}")
    init_log(
        store, workdir / "dkeys", "bench", "bench.example/d", clock_ms=_now, random_bytes=os.urandom
    )
    hub = Hub(store, workdir / "dkeys", HubOptions(clock_ms=_now, random_bytes=os.urandom))
    hub.start()
    engine = AlertEngine(
        hub, rules, lambda spec: build_sink(spec, {}), clock_ms=_now, random_bytes=os.urandom
    )
    engine.start()
    log = hub.by_name("bench")
    acked: dict[str, float] = {}
    background = itertools.cycle(events)
    try:
        for n in range(triggers):
            now = _now()
            batch = [validate_event(next(background), now_ms=now) for _ in range(50)]
            log.append(batch)  # background traffic evaluated alongside
            trigger = {
                "event_id": f"01950000-0000-7000-8000-{n:012x}",
                "event_type": "role.granted",
                "occurred_at": format_timestamp(now),
                "actor": {"id": "admin-1", "type": "user"},
                "action": "update",
                "outcome": "success",
                "target": {"type": "user", "id": f"u-{n}"},
            }
            log.append([validate_event(trigger, now_ms=now)])
            acked[trigger["event_id"]] = time.perf_counter()
            time.sleep(0.02)
        deadline = time.monotonic() + 30
        while not set(acked) <= set(receiver.arrived) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        engine.stop()
        hub.close()
        store.close()
        receiver.server.shutdown()
    return [
        (receiver.arrived[key] - at) * 1000 for key, at in acked.items() if key in receiver.arrived
    ]


def alert_rows(args: Any, console: Console) -> list[Row]:
    logging.getLogger("indelible.alerts").setLevel(logging.ERROR)  # one line per alert
    quick = bool(getattr(args, "quick", False))
    count = 30_000 if quick else 200_000
    events = _mixed(count)
    settle_heap()
    budget = 1.0 if quick else 4.0
    mine, fired = _evaluator_rate(events, budget)
    console.log(f"Indelible: billing pack evaluated at {mine:,.0f} events/s ({fired} alerts)")
    theirs = _peer_rate(events, budget)
    console.log(f"rule-engine: the pack's conditions at {theirs:,.0f} events/s")
    with tempfile.TemporaryDirectory(dir=getattr(args, "workdir", None)) as tmp:
        workdir = Path(tmp)
        follow = _follower_rate(events[: 20_000 if quick else 100_000], workdir)
        console.log(f"Indelible: follower from the store at {follow:,.0f} events/s")
        delays = _delays(events, workdir, 40 if quick else 200)
    p50 = statistics.median(delays) if delays else None
    p99 = statistics.quantiles(delays, n=100)[98] if len(delays) >= 2 else None
    console.log(
        f"Indelible: ack → webhook delivery of {len(delays)} alerts: "
        f"p50 {p50 or 0:.0f} ms, p99 {p99 or 0:.0f} ms"
    )
    return [
        Row("alerts: billing pack evaluated", "events/s", "rule-engine (stateless)", theirs, mine),
        Row("alerts: billing pack evaluated", "events/s", "goal", GOAL_RATE, mine),
        Row("alerts: follower from the store", "events/s", "goal", GOAL_RATE, follow),
        Row("alerts: ack → webhook, p50", "ms", "goal (p99)", GOAL_P99_MS, p50, False),
        Row("alerts: ack → webhook, p99", "ms", "goal (p99)", GOAL_P99_MS, p99, False),
    ]


if __name__ == "__main__":
    from bench.measure import print_table

    print_table(alert_rows(type("Args", (), {"quick": True})(), Console()), title="Alerting")
