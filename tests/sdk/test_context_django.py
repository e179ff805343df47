"""The Django middleware in a real Django project (its own process: Django's settings are
configured once per process), sync and async views, with real sessions and users."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.sdk.live import ROOT


def test_django_requests_carry_their_context(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.sdk.context_django_app", str(tmp_path / "db.sqlite3")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    alice = {"id": str(seen["user_pk"]), "type": "user", "name": "alice"}
    assert seen["anonymous"] == {
        "actor": None,
        "context": {"ip": "192.0.2.10", "request_id": "req-1"},
    }
    sync = seen["sync"]
    assert sync["actor"] == alice
    assert sync["context"]["ip"] == "192.0.2.11"
    assert sync["context"]["user_agent"] == "agent/1"
    assert sync["context"]["session_id"] == seen["session_key"]
    assert len(sync["context"]["request_id"]) == 36  # generated
    assert seen["async"]["actor"] == alice
    assert seen["async"]["context"]["ip"] == "127.0.0.1"
    assert seen["async"]["context"]["request_id"] == "r" * 200
