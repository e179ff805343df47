"""One real server: `indelible run` in a subprocess, over TCP, stopped with SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from indelible.core.checkpoint import open_checkpoint
from indelible.core.note import parse_vkey
from tests.conftest import run_cli
from tests.factories import billing_event


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_healthy(base: str, process: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited early: {process.communicate()}"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server never became healthy")


def test_run_serves_ingest_publishes_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "indelible.cli", "run", "--data", str(data)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_healthy(base, process)
        ndjson = "\n".join(json.dumps(billing_event(n)) for n in range(5, 10))
        with httpx.Client(base_url=base, timeout=10) as client:
            one = client.post("/v1/events", json=billing_event(0))
            array = client.post("/v1/events", json=[billing_event(n) for n in range(1, 5)])
            lines = client.post(
                "/v1/events", content=ndjson, headers={"Content-Type": "application/x-ndjson"}
            )
            assert [r.status_code for r in (one, array, lines)] == [201, 201, 201]
            assert lines.json()["receipts"][-1]["seq"] == 9
            verifier = parse_vkey(client.get("/v1/vkey").text.strip())
            deadline, size = time.monotonic() + 3, 0
            while size < 10:
                assert time.monotonic() < deadline, "no checkpoint covered the events within 3 s"
                response = client.get("/v1/checkpoint")
                if response.status_code == 200:
                    size = open_checkpoint(response.text, verifier, verifier.name)[0].size
                time.sleep(0.05)
            assert client.get("/readyz").status_code == 200
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "created log 'default'" in stdout and f"serving on {base}" in stdout
    assert "verification key (publish it): " in stdout
    verified = run_cli("verify", "--data", str(data), "--json")
    assert verified.code == 0, verified.stdout
    assert json.loads(verified.stdout)["size"] == 10
    assert json.loads(verified.stdout)["unpublished"] == 0
