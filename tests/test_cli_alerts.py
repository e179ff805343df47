"""The alerting commands: rules validate, rules test (text output), alerts status."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from indelible.storage import open_store
from indelible.storage.base import DeliveryRow
from tests.conftest import run_cli
from tests.factories import billing_event

RULES = """
sinks:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook", secret_env: HOOK_SECRET}
rules:
  - {id: voids, kind: match, when: {event_type: invoice.voided}, severity: low}
"""


def test_validate_accepts_a_file_and_names_every_problem_of_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    missing = run_cli("rules", "validate", str(path), "--json")
    assert missing.code == 2
    error = orjson.loads(missing.stdout)["error"]
    assert error["code"] == "bad_setting" and "HOOK_SECRET" in error["message"]
    assert run_cli("rules", "validate", str(path), "--no-env").code == 0
    monkeypatch.setenv("HOOK_SECRET", "never-printed")
    ok = run_cli("rules", "validate", str(path))
    assert ok.code == 0 and "1 rules, 1 sinks: valid" in ok.stdout
    assert "never-printed" not in ok.stdout + ok.stderr
    path.write_text("rules:\n  - {id: a, kind: count, window: soon}\n  - {id: A}\n", "utf-8")
    bad = run_cli("rules", "validate", str(path), "--json")
    assert bad.code == 2
    errors = orjson.loads(bad.stdout)["error"]["details"]["errors"]
    assert [(e["field"], e["rule"]) for e in errors] == [
        ("/rules/0/window", "duration"),
        ("/rules/0/threshold", "value"),
        ("/rules/1/id", "id"),
    ]
    path.write_text("rules: [\n", "utf-8")
    broken = run_cli("rules", "validate", str(path))
    assert broken.code == 2 and "not YAML at line" in broken.stderr


def test_rules_test_prints_which_line_fires_which_rule(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    events = tmp_path / "events.ndjson"
    events.write_bytes(
        orjson.dumps(billing_event(1))
        + b"\n"
        + orjson.dumps(
            {
                "seq": 7,
                "received_at": "2025-11-23T12:00:00.000Z",
                "event": billing_event(2, event_type="invoice.voided"),
            }
        )
        + b"\n"
    )
    result = run_cli("rules", "test", str(rules), "--against", str(events))
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"line 2 (invoice.voided {billing_event(2)['event_id']}) fires voids",
        "2 events, 1 alerts (0 suppressed by de-duplication or rate limits)",
    ]
    events.write_bytes(b'{"event_type": "x", "occurred_at": "later"}\n')
    bad = run_cli("rules", "test", str(rules), "--against", str(events), "--json")
    assert bad.code == 2
    assert orjson.loads(bad.stdout)["error"]["details"]["errors"][0]["field"] == "/occurred_at"


def test_alerts_status_shows_the_cursor_lag_and_dead_letters(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("init", "--data", str(data)).code == 0
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"".join(orjson.dumps(billing_event(n)) + b"\n" for n in range(3)))
    assert run_cli("append", str(source), "--data", str(data)).code == 0
    store = open_store(f"sqlite:///{data / 'indelible.db'}")
    log_id = store.get_log("default").log_id
    dead = DeliveryRow("a-1", "hook", 2, b"{}", "dead", 8, 0, "the receiver answered HTTP 500")
    store.save_alert_state(log_id, {"cursor": "1"}, [dead])
    store.close()
    result = run_cli("alerts", "status", "--data", str(data), "--status", "dead", "--json")
    assert result.code == 0, result.stderr
    status = orjson.loads(result.stdout)
    assert (status["cursor"], status["size"], status["lag"]) == (1, 3, 2)
    assert status["deliveries"] == {"pending": 0, "delivered": 0, "dead": 1}
    assert status["rows"][0]["last_error"] == "the receiver answered HTTP 500"
    text = run_cli("alerts", "status", "--data", str(data))
    assert "evaluated 1 of 3 entries (lag 2)" in text.stdout
    assert run_cli("alerts", "status", "--data", str(data), "--status", "lost").code == 2
