"""Schemathesis against the live server's own ``/openapi.json``: no 5xx, answers as documented.

One real server (``indelible run`` in a subprocess) with a few events in its log; the
``schemathesis run`` CLI then fuzzes every operation with the admin key, in deterministic
mode so that a failure reproduces. The auth-failure limit is raised for this server only:
``missing_required_header`` and ``ignored_auth`` send requests without a valid key, and at the
default limit the rest of the run would be answered 429.

Checks not run:

- ``positive_data_acceptance``: the event body is declared as an object, not with every rule of
  docs/formats.md, and a timestamp of the declared form may name no date, so schema-valid
  requests are refused with 400 or 422 by design;
- ``object_level_authorization``: needs a second principal configured (tenant isolation has
  its own test over every route, tests/server/test_access.py).

The 2xx bodies are declared with an empty schema, and the only response headers checked are
those the schema declares.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.factories import billing_event
from tests.server.test_live import Server, bearer

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "missing_required_header",
    "ignored_auth",
    "unsupported_method",
    "use_after_free",
    "ensure_resource_availability",
    "allow_header_conformance",
    "negative_data_rejection",
)
MAX_EXAMPLES = 30

# A run that degrades into 401s or 429s would test nothing: such warnings fail it.
CONFIG = """\
[warnings]
fail-on = ["missing_auth", "rate_limited", "base_url_mismatch"]
"""


def seed(base: str, token: str) -> None:
    """A few events, and wait for their checkpoint, so that reads have something to find."""
    with httpx.Client(base_url=base, headers=bearer(token), timeout=10) as client:
        posted = client.post("/v1/events", json=[billing_event(n) for n in range(8)])
        assert posted.status_code == 201, posted.text
        deadline = time.monotonic() + 10
        while client.get("/v1/checkpoint").status_code != 200:
            assert time.monotonic() < deadline, "no checkpoint was signed"
            time.sleep(0.1)


def run_schemathesis(base: str, token: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """``schemathesis run`` on ``base``'s schema; its reports and caches stay in ``workdir``."""
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{base}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--header",
        "X-Audit-Reason: schemathesis",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    return subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=120, check=False
    )


def test_schemathesis_finds_no_server_error_and_answers_match_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INDELIBLE_AUTH_FAIL_LIMIT", "1000000")
    server = Server(tmp_path / "data")
    try:
        admin = server.admin_key()
        assert admin is not None
        seed(server.base, admin)
        result = run_schemathesis(server.base, admin, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        # the run revoked no key it was not given: the admin key still works
        keys = httpx.get(f"{server.base}/v1/keys", headers=bearer(admin), timeout=10)
        assert keys.status_code == 200, keys.text
    finally:
        _, stderr = server.stop()
    assert "Traceback" not in stderr, stderr
