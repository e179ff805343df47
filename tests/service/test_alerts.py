"""The alert engine on real stores (SQLite and PostgreSQL), with real receivers on loopback:
the follower's restarts and crashes, webhook delivery through an outage, dead letters, e-mail
through aiosmtpd, Slack-compatible messages, rule reloads and integrity alerts."""

from __future__ import annotations

import email
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from pathlib import Path
from typing import Any

import orjson
import pytest

from indelible.core.alerting import ALERT_EVENT_TYPE
from indelible.core.entry import decode
from indelible.core.event import Event, validate_event
from indelible.errors import StoreError
from indelible.service.alerts.engine import AlertEngine
from indelible.service.alerts.follower import LogFollower, _event
from indelible.service.alerts.rulefile import load_rules
from indelible.service.hub import Hub, HubOptions
from indelible.service.logs import init_log
from indelible.sinks import build_sink, verify_signature
from indelible.storage import Store, open_store
from tests import pg
from tests.factories import event_id, timestamp
from tests.receivers import HttpReceiver, SmtpReceiver, wait_for

SECRET = "s3cret-for-tests"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alerts.db'}"
    db: pg.Database = request.getfixturevalue("pg_database")
    open_store(db.owner_url, service_role=db.service).close()
    return db.service_url


@contextmanager
def running_hub(url: str, tmp_path: Path, **options: Any) -> Iterator[Hub]:
    store = open_store(url)
    if not store.list_logs():
        init_log(
            store,
            tmp_path / "keys",
            "acme",
            "example.com/acme",
            clock_ms=now_ms,
            random_bytes=os.urandom,
        )
    hub = Hub(
        store,
        tmp_path / "keys",
        HubOptions(clock_ms=now_ms, random_bytes=os.urandom, checkpoint_interval=0.05, **options),
    )
    hub.start()
    try:
        yield hub
    finally:
        hub.close()
        store.close()


def refund(n: int, actor: str = "u-1", **extra: Any) -> Event:
    body = {
        "event_id": event_id(n, 3),
        "event_type": "refund.created",
        "occurred_at": timestamp(now_ms() - 1000),
        "actor": {"id": actor, "type": "user"},
        "target": {"type": "refund", "id": f"R-{n}"},
        "action": "create",
        "outcome": "success",
        **extra,
    }
    return validate_event(body, now_ms=now_ms())


def write_rules(path: Path, sinks: str, threshold: int = 3, extra: str = "") -> Path:
    path.write_text(
        f"""
sinks:
{sinks}
rules:
  - id: refund-spike
    title: Refund spike
    severity: high
    kind: count
    when: {{event_type: refund.created}}
    group_by: actor.id
    window: 10m
    threshold: {threshold}
{extra}
""",
        encoding="utf-8",
    )
    return path


def webhook(url: str, **options: Any) -> str:
    lines = [
        "  - name: hook",
        "    type: webhook",
        f"    url: '{url}'",
        "    secret_env: ALERT_SECRET",
    ]
    return "\n".join(lines + [f"    {key}: {value}" for key, value in options.items()])


def engine_for(hub: Hub, rules: Path, **options: Any) -> AlertEngine:
    environ = {"ALERT_SECRET": SECRET}
    options.setdefault("poll_interval", 0.02)
    return AlertEngine(
        hub,
        rules,
        lambda spec: build_sink(spec, environ),
        clock_ms=now_ms,
        random_bytes=os.urandom,
        **options,
    )


def alerts_in(store: Store, log_id: int) -> list[dict[str, Any]]:
    found = []
    for row in store.iter_entries(log_id):
        event = decode(row.leaf, row.personal).event
        if event["event_type"] == ALERT_EVENT_TYPE:
            found.append({"seq": row.seq, **event})
    return found


def test_a_refund_spike_is_appended_once_and_delivered_signed(
    store_url: str, tmp_path: Path
) -> None:
    receiver = HttpReceiver().start()
    try:
        rules = write_rules(tmp_path / "rules.yaml", webhook(receiver.url))
        with running_hub(store_url, tmp_path) as hub:
            engine = engine_for(hub, rules)
            engine.start()
            try:
                log = hub.by_name("acme")
                log.append([refund(n) for n in range(5)])  # 3rd fires; 4th and 5th de-duplicated
                got = wait_for(lambda: receiver.received, what="the webhook")
                time.sleep(0.3)
            finally:
                engine.stop()
            alerts = alerts_in(hub.store, log.info.log_id)
        assert len(alerts) == 1 and len(receiver.received) == 1
        alert = alerts[0]
        assert alert["data"]["rule"] == "refund-spike" and alert["data"]["count"] == 3
        assert alert["data"]["group"] == "actor.id=u-1" and alert["data"]["seq"] == 2
        request = got[0]
        assert request.headers["indelible-alert-id"] == alert["event_id"]
        assert verify_signature(SECRET.encode(), request.headers, request.body, now=time.time())
        assert not verify_signature(b"wrong", request.headers, request.body, now=time.time())
        payload = orjson.loads(request.body)
        assert payload["alert_id"] == alert["event_id"] and payload["seq"] == alert["seq"]
        assert payload["rule"] == "refund-spike" and payload["severity"] == "high"
    finally:
        receiver.stop()


class CrashingStore:
    """The real store, except that the next ``save_alert_state`` fails: a crash between the
    alerts' append and the cursor's save."""

    def __init__(self, store: Store) -> None:
        self._store, self.crash = store, False

    def save_alert_state(self, *args: Any, **kwargs: Any) -> None:
        if self.crash:
            self.crash = False
            raise StoreError("simulated crash before the cursor was saved")
        self._store.save_alert_state(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_follower_restart_or_crash_neither_loses_nor_repeats_an_alert(
    store_url: str, tmp_path: Path
) -> None:
    rules = load_rules(write_rules(tmp_path / "rules.yaml", webhook("http://127.0.0.1:9/x")))
    with running_hub(store_url, tmp_path) as hub:
        log = hub.by_name("acme")
        store = CrashingStore(hub.store)

        def follower() -> LogFollower:  # a restart: everything rebuilt from the store
            return LogFollower(store, log.info, rules, append=log.append, clock_ms=now_ms)  # type: ignore[arg-type]

        log.append([refund(0), refund(1)])
        assert follower().step()[0] == 2  # two refunds: below the threshold
        log.append([refund(2)])
        first = follower()
        assert first.warmed == 2  # the window was rebuilt from the log
        store.crash = True
        with pytest.raises(StoreError, match="simulated crash"):
            first.step()  # the alert was appended, the cursor not saved
        assert len(alerts_in(hub.store, log.info.log_id)) == 1
        again = follower()
        assert again.cursor == 2
        # the third refund is evaluated again and gives the same alert, kept once; the
        # alert.fired entry after it is read in the same step and enqueued, once
        read, deliveries = again.step()
        alerts = alerts_in(hub.store, log.info.log_id)
        assert len(alerts) == 1 and alerts[0]["data"]["count"] == 3
        assert read == 2 and [row.alert_id for row in deliveries] == [alerts[0]["event_id"]]
        assert again.step() == (0, [])
        log.append([refund(3, actor="u-2"), refund(4, actor="u-2")])
        assert follower().step()[0] == 2
        assert len(alerts_in(hub.store, log.info.log_id)) == 1
        assert [row.alert_id for row in hub.store.list_deliveries(log.info.log_id)] == [
            alerts[0]["event_id"]
        ]


def test_the_rate_limit_is_per_group_and_holds_across_a_follower_restart(
    store_url: str, tmp_path: Path
) -> None:
    extra = """  - id: refund-seen
    kind: match
    when: {event_type: refund.created}
    group_by: actor.id
    max_per_hour: 2
"""
    path = write_rules(tmp_path / "rules.yaml", webhook("http://127.0.0.1:9/x"), 1000, extra)
    rules = load_rules(path)
    with running_hub(store_url, tmp_path) as hub:
        log = hub.by_name("acme")

        def follower() -> LogFollower:  # a restart: everything rebuilt from the store
            return LogFollower(hub.store, log.info, rules, append=log.append, clock_ms=now_ms)

        def groups() -> list[str]:
            return [a["data"]["group"] for a in alerts_in(hub.store, log.info.log_id)]

        log.append([refund(n) for n in range(3)])  # a flood from u-1: two alerts, then quiet
        assert follower().step()[0] == 3
        assert groups() == ["actor.id=u-1"] * 2
        state = hub.store.load_alert_state(log.info.log_id)
        assert len(orjson.loads(state["rl\x1frefund-seen\x1factor.id=u-1"])) == 2
        log.append([refund(3), refund(4, actor="u-2")])
        restarted = follower()
        while restarted.step()[0]:
            pass
        # u-1 is still at its limit after the restart; u-2 of the same rule fires
        assert groups() == ["actor.id=u-1"] * 2 + ["actor.id=u-2"]


def test_the_follower_restores_the_personal_values_rules_read_and_skips_a_forged_one(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = """  - id: new-address
    kind: first_seen
    when: {action: login}
    group_by: actor.id
    field: context.ip
"""
    path = write_rules(tmp_path / "rules.yaml", webhook("http://127.0.0.1:9/x"), 1000, extra)
    rules = load_rules(path)

    def login(n: int, ip: str) -> Event:
        body = {
            "event_id": event_id(n, 5),
            "event_type": "auth.login",
            "occurred_at": timestamp(now_ms() - 1000),
            "actor": {"id": "u-1", "type": "user", "name": "Ada Lovelace"},
            "context": {"ip": ip},
            "action": "login",
            "outcome": "success",
            "personal": ["/actor/name", "/context/ip"],
        }
        return validate_event(body, now_ms=now_ms())

    with running_hub(store_url, tmp_path) as hub:
        log = hub.by_name("acme")
        log.append([login(0, "203.0.113.1"), login(1, "203.0.113.1"), login(2, "203.0.113.2")])
        follower = LogFollower(hub.store, log.info, rules, append=log.append, clock_ms=now_ms)
        while follower.step()[0]:
            pass
        [alert] = alerts_in(hub.store, log.info.log_id)
        # the rules read context.ip: restored (a new address, 203.0.113.2, fired once);
        # no rule reads actor.name: it stays null in what the rules (and the alert) see
        assert alert["data"]["value"] == "203.0.113.2" and alert["data"]["seq"] == 2
        assert alert["data"]["trigger"]["actor"] == {"id": "u-1", "type": "user", "name": None}
        # a personal value that does not match its commitment: the entry is skipped, logged
        row = hub.store.get_entry(log.info.log_id, 2)
        forged = [item._replace(value=b'"198.51.100.9"') for item in row.personal]
        assert _event(row.leaf, forged) is None
        assert "does not match its commitment" in caplog.text
        assert _event(b"[not a leaf", ()) is None and "not JSON" in caplog.text


def test_a_webhook_receiver_down_then_up_gets_each_alert_once(
    store_url: str, tmp_path: Path
) -> None:
    receiver = HttpReceiver()  # not started: connections are refused
    sink = webhook(receiver.url, backoff="50ms", max_backoff="200ms", max_attempts=100)
    rules = write_rules(tmp_path / "rules.yaml", sink, threshold=2)
    with running_hub(store_url, tmp_path) as hub:
        engine = engine_for(hub, rules)
        engine.start()
        try:
            log = hub.by_name("acme")
            log.append([refund(n, actor=f"u-{n // 2}") for n in range(6)])  # three actors
            log_id = log.info.log_id
            wait_for(
                lambda: [r for r in hub.store.list_deliveries(log_id) if r.attempts >= 2],
                what="failed attempts",
            )
            receiver.start()
            wait_for(lambda: len(receiver.received) >= 3, what="three alerts")
            time.sleep(0.5)  # nothing more arrives
            rows = hub.store.list_deliveries(log_id)
        finally:
            engine.stop()
            receiver.stop()
        alerts = {alert["event_id"] for alert in alerts_in(hub.store, log_id)}
    sent = [request.headers["indelible-alert-id"] for request in receiver.received]
    assert len(sent) == 3 and set(sent) == alerts
    assert {row.status for row in rows} == {"delivered"} and len(rows) == 3


def test_a_receiver_that_keeps_failing_gets_a_visible_dead_letter(
    store_url: str, tmp_path: Path
) -> None:
    receiver = HttpReceiver(status=500).start()
    sink = webhook(receiver.url, backoff="10ms", max_attempts=3)
    rules = write_rules(tmp_path / "rules.yaml", sink, threshold=1)
    try:
        with running_hub(store_url, tmp_path) as hub:
            engine = engine_for(hub, rules)
            engine.start()
            try:
                log_id = hub.by_name("acme").info.log_id
                hub.by_name("acme").append([refund(0)])
                dead = wait_for(
                    lambda: hub.store.list_deliveries(log_id, status="dead"), what="a dead letter"
                )
            finally:
                engine.stop()
    finally:
        receiver.stop()
    assert dead[0].attempts == 3 and dead[0].last_error == "the receiver answered HTTP 500"


def test_email_through_a_real_smtp_server_and_a_slack_message(
    tmp_path: Path,
) -> None:
    smtp = SmtpReceiver().start()
    slack = HttpReceiver().start()
    sinks = (
        f"  - {{name: mail, type: email, host: 127.0.0.1, port: {smtp.port}, "
        "from: alerts@example.com, to: [ops@example.com, audit@example.com]}\n"
        f"  - {{name: chat, type: slack, url: '{slack.url}'}}"
    )
    rules = write_rules(tmp_path / "rules.yaml", sinks, threshold=1)
    try:
        with running_hub(f"sqlite:///{tmp_path / 'a.db'}", tmp_path) as hub:
            engine = engine_for(hub, rules)
            engine.start()
            try:
                hub.by_name("acme").append([refund(0)])
                wait_for(lambda: smtp.messages and slack.received, what="mail and chat")
            finally:
                engine.stop()
            alert = alerts_in(hub.store, hub.by_name("acme").info.log_id)[0]
    finally:
        smtp.stop()
        slack.stop()
    sender, recipients, raw = smtp.messages[0]
    message = email.message_from_bytes(raw, policy=policy.default)
    assert sender == "alerts@example.com"
    assert recipients == ["ops@example.com", "audit@example.com"]
    assert message["Subject"] == "[Indelible] [HIGH] Refund spike — actor.id=u-1"
    assert message["Message-ID"] == f"<{alert['event_id']}@alerts.indelible>"
    assert "refund-spike" in message.get_body().get_content()  # type: ignore[union-attr]
    text = orjson.loads(slack.received[0].body)["text"]
    assert text.startswith("*[HIGH] Refund spike* — actor.id=u-1")
    assert alert["event_id"] in text


def test_rules_reload_without_restart_and_an_invalid_file_keeps_them(tmp_path: Path) -> None:
    receiver = HttpReceiver().start()
    path = write_rules(tmp_path / "rules.yaml", webhook(receiver.url), threshold=100)
    try:
        with running_hub(f"sqlite:///{tmp_path / 'a.db'}", tmp_path) as hub:
            engine = engine_for(hub, path)
            engine.start()
            try:
                log = hub.by_name("acme")
                log.append([refund(0)])
                time.sleep(0.3)
                assert receiver.received == []
                write_rules(path, webhook(receiver.url), threshold=2)  # reloaded within ~1 s
                wait_for(lambda: engine.rules.rules[0].threshold == 2, what="the reload")
                log.append([refund(1)])  # the new rule, with the window rebuilt: 2 refunds
                wait_for(lambda: receiver.received, what="the alert of the new rules")
                path.write_text("rules: [{id: broken, kind: nonsense}]\n", encoding="utf-8")
                invalid = wait_for(
                    lambda: [r for r in receiver.received if b"rules_invalid" in r.body],
                    what="the integrity alert",
                )
                assert engine.rules.rules[0].threshold == 2  # the valid rules stay in use
            finally:
                engine.stop()
    finally:
        receiver.stop()
    payload = orjson.loads(invalid[0].body)
    assert payload["rule"] == "integrity.rules_invalid" and payload["severity"] == "critical"
    assert "/rules/0/kind" in payload["data"]["message"]


def test_a_checkpoint_that_stops_advancing_raises_an_integrity_alert(tmp_path: Path) -> None:
    receiver = HttpReceiver().start()
    path = write_rules(tmp_path / "rules.yaml", webhook(receiver.url), threshold=100)
    try:
        url = f"sqlite:///{tmp_path / 'a.db'}"
        with running_hub(url, tmp_path) as hub:
            # the publisher signs nothing for an hour, while entries arrive
            for runtime in hub.logs():
                runtime.publisher.stop()
            engine = engine_for(hub, path, checkpoint_stall=0.2, health_interval=0.1)
            engine.start()
            try:
                hub.by_name("acme").append([refund(0)])
                stalled = wait_for(
                    lambda: [r for r in receiver.received if b"checkpoint_stalled" in r.body],
                    what="checkpoint_stalled",
                )
            finally:
                engine.stop()
    finally:
        receiver.stop()
    assert orjson.loads(stalled[0].body)["data"]["message"].startswith("the log has 1 entries")


def test_alerting_enabled_on_a_log_with_history_starts_at_its_end(tmp_path: Path) -> None:
    receiver = HttpReceiver().start()
    rules = write_rules(tmp_path / "rules.yaml", webhook(receiver.url))
    try:
        with running_hub(f"sqlite:///{tmp_path / 'a.db'}", tmp_path) as hub:
            log = hub.by_name("acme")
            log.append([refund(n) for n in range(5)])  # history: a spike nobody watched
            engine = engine_for(hub, rules)
            engine.start()
            try:
                assert hub.store.load_alert_state(log.info.log_id)["cursor"] == "5"
                time.sleep(0.3)
                assert receiver.received == []
                log.append([refund(5)])  # the window still holds the recent history
                got = wait_for(lambda: receiver.received, what="the alert")
            finally:
                engine.stop()
    finally:
        receiver.stop()
    assert orjson.loads(got[0].body)["data"]["count"] == 6


class FailingAppends:
    """The real store, except that its next ``failures`` appends fail as a full disk would."""

    def __init__(self, store: Store, failures: int) -> None:
        self._store, self.failures = store, failures

    def append(self, *args: Any, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("append failed: database or disk is full")
        self._store.append(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_failed_commit_and_an_unreachable_witness_raise_integrity_alerts(
    tmp_path: Path,
) -> None:
    from indelible.core.cosignature import generate_cosigner
    from indelible.service.anchoring import AnchorConfig, WitnessConfig
    from tests.net import free_port

    receiver = HttpReceiver().start()
    rules = write_rules(tmp_path / "rules.yaml", webhook(receiver.url), threshold=100)
    witness = generate_cosigner("witness.example", b"\x07" * 32).verifier()
    dead = WitnessConfig(f"http://127.0.0.1:{free_port()}", witness)
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    init_log(
        store,
        tmp_path / "keys",
        "acme",
        "example.com/acme",
        clock_ms=now_ms,
        random_bytes=os.urandom,
    )
    failing = FailingAppends(store, failures=1)
    options = HubOptions(
        clock_ms=now_ms,
        random_bytes=os.urandom,
        checkpoint_interval=0.05,
        anchors=AnchorConfig(witnesses=(dead,)),
    )
    hub = Hub(failing, tmp_path / "keys", options)  # type: ignore[arg-type]
    hub.start()
    try:
        engine = engine_for(hub, rules, health_interval=0.1)
        engine.start()
        try:
            with pytest.raises(StoreError, match="disk is full"):
                hub.by_name("acme").append([refund(0)])  # nothing acknowledged
            hub.by_name("acme").append([refund(1)])  # the next commit works
            wanted = {"integrity.store_write_failed", "integrity.anchor_failed"}

            def integrity() -> dict[str, Any] | None:
                found = {p["rule"]: p for p in (orjson.loads(r.body) for r in receiver.received)}
                return found if wanted <= set(found) else None

            alerts = wait_for(integrity, what="both integrity alerts")
        finally:
            engine.stop()
    finally:
        hub.close()
        store.close()
        receiver.stop()
    assert "disk is full" in alerts["integrity.store_write_failed"]["data"]["message"]
    assert dead.url in alerts["integrity.anchor_failed"]["data"]["message"]
