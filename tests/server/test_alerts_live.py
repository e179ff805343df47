"""Alerting in a real server: `indelible run` with alert_rules, events over HTTP, alerts at a
real webhook receiver; POST /v1/verify on a tampered store raises verification_failed."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import orjson
import pytest

from indelible.sinks import verify_signature
from tests.factories import billing_event
from tests.receivers import HttpReceiver, wait_for
from tests.server.test_live import Server, bearer


def test_a_served_log_alerts_a_webhook_and_a_failed_verification_is_an_alert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = HttpReceiver().start()
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"""
packs: [billing]
overrides:
  billing.refund_spike: {{threshold: 3}}
sinks:
  - {{name: hook, type: webhook, url: "{receiver.url}", secret_env: HOOK_SECRET}}
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("INDELIBLE_ALERT_RULES", str(rules))
    monkeypatch.setenv("HOOK_SECRET", "live-secret")
    data = tmp_path / "data"
    server = Server(data)
    try:
        assert any(line.startswith("alerting: 10 rules and 1 sinks") for line in server.banner)
        token = server.admin_key()
        assert token is not None
        refunds = [
            billing_event(n, event_type="refund.created", actor={"id": "u-5", "type": "user"})
            for n in range(4)
        ]
        with httpx.Client(base_url=server.base, headers=bearer(token), timeout=10) as client:
            assert client.post("/v1/events", json=refunds).status_code == 201
            got = wait_for(
                lambda: [r for r in receiver.received if b"refund_spike" in r.body],
                what="the refund spike alert",
            )
            alert = orjson.loads(got[0].body)
            assert alert["rule"] == "billing.refund_spike"
            assert verify_signature(b"live-secret", got[0].headers, got[0].body, now=time.time())
            # the bootstrap admin key printed at the first start is a privilege grant too
            grants = [orjson.loads(r.body) for r in receiver.received if b"privilege" in r.body]
            assert [grant["rule"] for grant in grants] == ["access.privilege_granted"]
            listed = client.get("/v1/events", params={"event_type": "alert.fired"}).json()
            assert {item["event"]["event_id"] for item in listed["items"]} == {
                alert["alert_id"],
                grants[0]["alert_id"],
            }
            metrics = client.get("/metrics").text
            assert "indelible_alerts_fired 2.0" in metrics
            assert 'indelible_alert_deliveries{status="dead"} 0.0' in metrics
            assert "indelible_alert_lag_entries" in metrics
            # someone with the database file rewrites an entry behind the service's back
            db = sqlite3.connect(data / "indelible.db")
            db.execute("DROP TRIGGER entries_no_update")
            db.execute(
                "UPDATE entries SET leaf = CAST(REPLACE(CAST(leaf AS TEXT), 'u-5', "
                "'u-6') AS BLOB) WHERE event_type = 'refund.created'"
            )
            db.commit()
            db.close()
            verdict = client.post("/v1/verify").json()
            assert verdict["ok"] is False
            failed = wait_for(
                lambda: [r for r in receiver.received if b"verification_failed" in r.body],
                what="the verification_failed alert",
            )
        payload = orjson.loads(failed[0].body)
        assert payload["severity"] == "critical"
        assert payload["data"]["verification"]["code"] == verdict["error"]["code"]
    finally:
        server.stop()
        receiver.stop()
    assert len([r for r in receiver.received if b"refund_spike" in r.body]) == 1
