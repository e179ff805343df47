"""The alert engine of a running service: followers, rule reloads, integrity checks, delivery.

Two threads:

- the **follower thread** runs a :class:`LogFollower` per served log, reloads the rules when
  the file changes (an invalid file keeps the rules in use and raises the integrity alert
  ``integrity.rules_invalid``), checks each log's health every few seconds and evaluates
  absence rules once caught up;
- the **delivery thread** sends due deliveries to the sinks, woken as soon as the follower
  enqueues some.

Integrity alerts (``integrity.*``) are appended as ``alert.fired`` like rule alerts and go
to every sink. They are raised on a change of condition (a problem appearing), not while it
lasts: ``verification_failed`` (``POST /v1/verify`` found the log broken),
``checkpoint_stalled`` (the tree grew and no checkpoint was signed for
``checkpoint_stall`` seconds), ``publisher_failed``, ``anchor_failed`` (a time-stamping
authority or witness failed), ``store_write_failed`` (a commit failed, or the sequencer
halted) and ``rules_invalid``. When the store itself cannot be written, the alert cannot be
recorded: it is sent to the sinks directly (once, no retries) and logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from indelible.core.alerting import ALERT_EVENT_TYPE, SYSTEM_ACTOR
from indelible.core.event import Event, format_timestamp, validate_event
from indelible.core.ids import uuid7
from indelible.core.rules import RuleSet
from indelible.errors import IndelibleError, InvalidRules
from indelible.service.alerts.delivery import (
    DeliveryFailed,
    Retry,
    Sink,
    SinkFactory,
    alert_payload,
    attempt,
)
from indelible.service.alerts.follower import CURSOR, LogFollower
from indelible.service.alerts.rulefile import RulesFile
from indelible.service.hub import Hub, LogRuntime

__all__ = ["AlertEngine"]

log = logging.getLogger("indelible.alerts")

_RELOAD_EVERY = 1.0


class AlertEngine:
    """Alerting for every log a :class:`Hub` serves."""

    def __init__(
        self,
        hub: Hub,
        rules_path: str | Path,
        sink_factory: SinkFactory,
        *,
        clock_ms: Callable[[], int],
        random_bytes: Callable[[int], bytes],
        poll_interval: float = 0.05,
        checkpoint_stall: float = 60.0,
        batch: int = 5_000,
        health_interval: float = 2.0,
    ) -> None:
        self.hub, self.store = hub, hub.store
        self._clock, self._random = clock_ms, random_bytes
        self._factory = sink_factory
        self._poll, self._stall_ms, self._batch = poll_interval, int(checkpoint_stall * 1000), batch
        self._health_every = health_interval
        self.rules_file = RulesFile(Path(rules_path))
        self.rules, _ = self.rules_file.read()  # an invalid file at start-up stops the start
        self._sinks = self._build_sinks(self.rules)
        self._followers: dict[int, LogFollower] = {}
        self._problems: dict[tuple[int, str], str] = {}
        self._stall: dict[int, tuple[int, int]] = {}  # log → (checkpoint size, since ms)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.errors = 0

    # ---- life cycle
    def start(self) -> None:
        """Start following. A log alerting never followed before starts at its current end:
        its history is not evaluated (``indelible rules test`` on an export covers it)."""
        for runtime in self.hub.logs():
            log_id = runtime.info.log_id
            if CURSOR not in self.store.load_alert_state(log_id):
                size = runtime.sequencer.size
                self.store.save_alert_state(log_id, {CURSOR: str(size)})
                if size:
                    log.warning(
                        "log %s: alerting starts at seq %d; earlier entries are not evaluated",
                        runtime.info.name,
                        size,
                    )
        for target, name in ((self._follow, "follower"), (self._deliver, "delivery")):
            thread = threading.Thread(target=target, name=f"indelible-alerts-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        for sink, _ in self._sinks.values():
            sink.close()

    def _build_sinks(self, rules: RuleSet) -> dict[str, tuple[Sink, Retry]]:
        return {spec.name: (self._factory(spec), Retry.of(spec)) for spec in rules.sinks}

    # ---- the follower thread
    def _follow(self) -> None:
        last_health = last_reload = 0.0
        while not self._stop.is_set():
            busy = False
            now = self._clock() / 1000
            if now - last_reload >= _RELOAD_EVERY:
                last_reload = now
                self._maybe_reload()
            for runtime in self.hub.logs():
                try:
                    busy |= self._follow_log(runtime)
                except Exception:  # the store, or a bug: say so, keep following the others
                    self.errors += 1
                    log.exception("log %s: alerting failed, retrying", runtime.info.name)
                    self._followers.pop(runtime.info.log_id, None)  # rebuilt from the store
                    self._stop.wait(1.0)
            if now - last_health >= self._health_every:
                last_health = now
                self._check_health()
            if not busy:
                self._stop.wait(self._poll)

    def _follow_log(self, runtime: LogRuntime) -> bool:
        follower = self._followers.get(runtime.info.log_id)
        if follower is None:
            follower = LogFollower(
                self.store,
                runtime.info,
                self.rules,
                append=runtime.append,
                clock_ms=self._clock,
                batch=self._batch,
            )
            self._followers[runtime.info.log_id] = follower
        read, deliveries = follower.step()
        if deliveries:
            self._wake.set()
        if read == 0:
            follower.tick(self._clock())
        return read > 0

    def _maybe_reload(self) -> None:
        if not self.rules_file.changed():
            return
        try:
            rules, _ = self.rules_file.read()
            sinks = self._build_sinks(rules)
        except (InvalidRules, IndelibleError, OSError) as exc:
            message = exc.message if isinstance(exc, IndelibleError) else str(exc)
            log.error(
                "the new rules in %s are invalid, keeping the rules in use: %s",
                self.rules_file.path,
                message,
            )
            for runtime in self.hub.logs():
                self._integrity(
                    runtime,
                    "rules_invalid",
                    f"rules file {self.rules_file.path}: {message}",
                    key="rules",
                )
            return
        with self._lock:
            old, self._sinks = self._sinks, sinks
            self.rules = rules
        for sink, _ in old.values():
            sink.close()
        self._followers.clear()  # each is rebuilt from the stored state, windows warmed again
        for runtime in self.hub.logs():
            self._problems.pop((runtime.info.log_id, "rules_invalid"), None)
        log.warning(
            "alert rules reloaded from %s: %d rules", self.rules_file.path, len(rules.rules)
        )

    # ---- integrity
    def _check_health(self) -> None:
        for runtime in self.hub.logs():
            try:
                self._health_of(runtime)
            except IndelibleError as exc:
                log.error("log %s: health check failed: %s", runtime.info.name, exc.message)

    def _health_of(self, runtime: LogRuntime) -> None:
        sequencer = runtime.sequencer
        if sequencer.halted is not None:
            self._integrity(runtime, "store_write_failed", sequencer.halted.message, key="halted")
        elif sequencer.failures and sequencer.last_failure is not None:
            message = f"{sequencer.failures} commits failed, the last: {sequencer.last_failure}"
            self._integrity(
                runtime, "store_write_failed", message, key=f"commits:{sequencer.failures}"
            )
        error = runtime.publisher.last_error
        if error is not None:
            self._integrity(runtime, "publisher_failed", f"[{error.code}] {error.message}")
        else:
            self._clear(runtime, "publisher_failed")
        anchor_errors = runtime.anchorer.errors if runtime.anchorer is not None else {}
        if anchor_errors:
            text = "; ".join(f"{where}: {what}" for where, what in sorted(anchor_errors.items()))
            self._integrity(runtime, "anchor_failed", text)
        else:
            self._clear(runtime, "anchor_failed")
        self._check_stall(runtime)

    def _check_stall(self, runtime: LogRuntime) -> None:
        log_id, now = runtime.info.log_id, self._clock()
        checkpoint = self.store.latest_checkpoint(log_id)
        signed = checkpoint.size if checkpoint is not None else 0
        size = runtime.sequencer.size
        known = self._stall.get(log_id)
        if known is None or known[0] != signed or size <= signed:
            self._stall[log_id] = (signed, now)
            self._clear(runtime, "checkpoint_stalled")
            return
        if now - known[1] >= self._stall_ms:
            message = (
                f"the log has {size} entries and no checkpoint was signed past size {signed} "
                f"for {(now - known[1]) // 1000} s"
            )
            self._integrity(runtime, "checkpoint_stalled", message)

    def verification_failed(self, log_id: int, details: Mapping[str, Any]) -> None:
        """``POST /v1/verify`` (or another verifier in this process) found the log broken."""
        runtime = self.hub.get(log_id)
        message = str(details.get("message", "verification failed"))
        self._integrity(
            runtime,
            "verification_failed",
            message,
            key=str(self._clock()),
            data={"verification": dict(details)},
        )

    def _clear(self, runtime: LogRuntime, kind: str) -> None:
        self._problems.pop((runtime.info.log_id, kind), None)

    def _integrity(
        self,
        runtime: LogRuntime,
        kind: str,
        message: str,
        *,
        key: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Raise the integrity alert ``kind`` unless the same problem is already raised."""
        slot = (runtime.info.log_id, kind)
        if self._problems.get(slot) == (key or message):
            return
        self._problems[slot] = key or message
        now = self._clock()
        event = self._integrity_event(kind, message, now, data or {})
        log.error("log %s: integrity alert %s: %s", runtime.info.name, kind, message)
        try:
            runtime.append([event])
        except IndelibleError as exc:  # the store cannot take it: tell the sinks directly
            log.error(
                "log %s: the %s alert could not be recorded: %s",
                runtime.info.name,
                kind,
                exc.message,
            )
            self._send_unrecorded(runtime.info.name, event)

    def _integrity_event(self, kind: str, message: str, now: int, data: dict[str, Any]) -> Event:
        body = {
            "event_id": uuid7(now, self._random),
            "event_type": ALERT_EVENT_TYPE,
            "occurred_at": format_timestamp(now),
            "actor": dict(SYSTEM_ACTOR),
            "action": "alert",
            "outcome": "success",
            "target": {"type": "alert_rule", "id": f"integrity.{kind}"},
            "reason": message[:1000],
            "context": {"source": "alerts"},
            "data": {
                "rule": f"integrity.{kind}",
                "title": f"Integrity: {kind.replace('_', ' ')}",
                "severity": "critical",
                "kind": "integrity",
                "group": "",
                "message": message[:4000],
                "sinks": [spec.name for spec in self.rules.sinks],
                **data,
            },
        }
        return validate_event(body, now_ms=now)

    def _send_unrecorded(self, log_name: str, event: Event) -> None:
        import orjson

        payload = alert_payload(log_name, -1, event.body)
        body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        with self._lock:
            sinks = dict(self._sinks)
        for name, (sink, _) in sinks.items():
            try:
                sink.send(event.event_id, body, payload)
            except (DeliveryFailed, OSError) as exc:
                log.error("integrity alert to sink %s failed: %s", name, exc)

    # ---- the delivery thread
    def _deliver(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            sent = 0
            for runtime in self.hub.logs():
                try:
                    sent += self._deliver_log(runtime.info.log_id)
                except Exception:  # the store, or a bug: say so, keep delivering
                    log.exception("log %s: delivery failed, retrying", runtime.info.name)
                    self._stop.wait(1.0)
            if not sent:
                self._wake.wait(0.25)

    def _deliver_log(self, log_id: int) -> int:
        rows = self.store.due_deliveries(log_id, self._clock(), 100)
        with self._lock:
            sinks = dict(self._sinks)
        for row in rows:
            if self._stop.is_set():
                break
            attempt(self.store, log_id, row, sinks, self._clock())
        return len(rows)

    def lag(self) -> int:
        """Entries not yet evaluated, all followed logs together."""
        return sum(
            max(0, follower.store.tree_size(follower.info.log_id) - follower.cursor)
            for follower in list(self._followers.values())
        )

    def deliveries(self) -> dict[str, int]:
        """Deliveries by status, all served logs together."""
        total: dict[str, int] = {}
        for runtime in self.hub.logs():
            for status, count in self.store.count_deliveries(runtime.info.log_id).items():
                total[status] = total.get(status, 0) + count
        return total

    def status(self) -> dict[str, Any]:
        """Each followed log's cursor, for metrics and tests."""
        return {
            follower.info.name: {"cursor": follower.cursor, "fired": follower.fired}
            for follower in list(self._followers.values())
        }
