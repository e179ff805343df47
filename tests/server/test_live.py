"""One real server: `indelible run` in a subprocess, over TCP, stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from indelible.core.checkpoint import open_checkpoint
from indelible.core.note import parse_vkey
from tests import pg
from tests.conftest import run_cli
from tests.factories import billing_event
from tests.net import free_port


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


class Server:
    """``indelible run`` in a subprocess; its stdout is read up to the "serving on" line."""

    def __init__(self, data: Path, store: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "indelible.cli", "run", "--data", str(data), *store]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.banner: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.banner.append(line.rstrip("\n"))
            if line.startswith("serving on"):
                break
        wait_until_healthy(self.base, self.process)

    def admin_key(self) -> str | None:
        prefix = "admin API key (shown once): "
        keys = [line[len(prefix) :] for line in self.banner if line.startswith(prefix)]
        return keys[0] if keys else None

    def stop(self) -> tuple[str, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = self.process.communicate(timeout=20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.communicate()
        assert self.process.returncode == 0, stderr
        return "\n".join(self.banner) + stdout, stderr


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The ``--store`` arguments: none for SQLite; for PostgreSQL, the service role's URL
    after the owner ran ``indelible init`` (as an operator would)."""
    if request.param == "sqlite":
        return []
    db: pg.Database = request.getfixturevalue("pg_database")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INDELIBLE_PG_SERVICE_ROLE", db.service)
        made = run_cli("init", "--data", str(tmp_path / "data"), "--store", db.owner_url)
    assert made.code == 0, made.stderr
    return ["--store", db.service_url]


def test_run_serves_keys_ingest_queries_and_stops_cleanly_on_sigterm(
    tmp_path: Path, store: list[str]
) -> None:
    data = tmp_path / "data"
    server = Server(data, store)
    try:
        admin = server.admin_key()
        assert admin is not None and admin.startswith("idl_")
        with httpx.Client(base_url=server.base, timeout=10) as client:
            assert client.post("/v1/events", json=billing_event(0)).status_code == 401
            forged = {"X-Forwarded-For": "203.0.113.99", **bearer("idl_" + "0" * 16 + "_x")}
            assert client.get("/v1/events", headers=forged).status_code == 401
            failed = client.get(
                "/v1/events", params={"event_type": "audit.auth_failed"}, headers=bearer(admin)
            ).json()["items"]
            # The TCP peer is the client: a header cannot move the limit or the record.
            assert [item["event"]["context"]["ip"] for item in failed] == ["127.0.0.1"] * 2
            keys = {}
            for role in ("writer", "auditor"):
                made = client.post(
                    "/v1/keys", json={"name": f"live {role}", "role": role}, headers=bearer(admin)
                )
                assert made.status_code == 201, made.text
                keys[role] = made.json()["token"]
            writer, auditor = bearer(keys["writer"]), bearer(keys["auditor"])
            ndjson = "\n".join(json.dumps(billing_event(n)) for n in range(5, 10))
            one = client.post("/v1/events", json=billing_event(0), headers=writer)
            array = client.post(
                "/v1/events", json=[billing_event(n) for n in range(1, 5)], headers=writer
            )
            lines = client.post(
                "/v1/events",
                content=ndjson,
                headers={**writer, "Content-Type": "application/x-ndjson"},
            )
            assert [r.status_code for r in (one, array, lines)] == [201, 201, 201]
            assert client.get("/v1/events", headers=writer).status_code == 403
            page = client.get(
                "/v1/events",
                params={"event_type": "invoice.*", "limit": 4},
                headers={**auditor, "X-Audit-Reason": "live test"},
            )
            assert page.status_code == 200, page.text
            assert len(page.json()["items"]) == 4 and page.json()["next_cursor"]
            export = client.get(
                "/v1/events/export",
                params={"format": "csv", "event_type": "invoice.*"},
                headers=auditor,
            )
            assert export.status_code == 200 and export.headers["x-export-count"] == "10"
            assert len(export.text.splitlines()) == 11
            verifier = parse_vkey(client.get("/v1/vkey", headers=auditor).text.strip())
            last = lines.json()["receipts"][-1]["seq"]
            deadline, size = time.monotonic() + 3, 0
            while size <= last:
                assert time.monotonic() < deadline, "no checkpoint covered the events within 3 s"
                response = client.get("/v1/checkpoint", headers=auditor)
                if response.status_code == 200:
                    size = open_checkpoint(response.text, verifier, verifier.name)[0].size
                time.sleep(0.05)
            assert client.get("/readyz").status_code == 200
            assert "indelible_http_requests_total" in client.get("/metrics").text
    finally:
        stdout, _ = server.stop()
    assert f"serving on {server.base}" in stdout
    # on SQLite `run` creates the log; on PostgreSQL the owner's `init` already had
    assert ("created log 'default'" in stdout) == (not store)
    assert "verification key (publish it): " in stdout
    verified = run_cli("verify", "--data", str(data), *store, "--json")
    assert verified.code == 0, verified.stdout
    assert json.loads(verified.stdout)["unpublished"] == 0

    again = Server(data, store)  # a second start: the keys exist, none is printed
    try:
        assert again.admin_key() is None
        with httpx.Client(base_url=again.base, timeout=10) as client:
            assert client.get("/v1/events", headers=bearer(admin)).status_code == 200
    finally:
        again.stop()


def test_a_second_server_exits_or_waits_as_a_standby_and_takes_over(
    tmp_path: Path, store: list[str]
) -> None:
    data = tmp_path / "data"
    primary = Server(data, store)
    admin = primary.admin_key()
    assert admin is not None
    command = [sys.executable, "-m", "indelible.cli", "run", "--data", str(data), *store]
    standby: subprocess.Popen[str] | None = None
    try:
        with httpx.Client(base_url=primary.base, timeout=10) as client:
            sent = [billing_event(n) for n in range(3)]
            assert client.post("/v1/events", json=sent, headers=bearer(admin)).status_code == 201
        # without lease_wait, a second server refuses to start, naming the reason
        second = subprocess.run(
            [*command, "--port", str(free_port())], capture_output=True, text=True, timeout=30
        )
        assert second.returncode != 0
        said = " ".join(second.stderr.split())  # the console wraps long lines
        assert "[store_locked]" in said and "written by another process" in said, said
        # with it, it waits (serving nothing) until the primary stops, then takes over
        port = free_port()
        standby = subprocess.Popen(
            [*command, "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "INDELIBLE_LEASE_WAIT": "true"},
        )
        # wait until it says it waits (a fixed sleep lost the race on a loaded machine: the
        # primary stopped before the standby had even asked for the lease)
        said_lines: list[str] = []
        errors = standby.stderr
        assert errors is not None
        reader = threading.Thread(
            target=lambda: said_lines.extend(iter(errors.readline, "")), daemon=True
        )
        reader.start()
        deadline = time.monotonic() + 30
        while "waiting for its write lease" not in " ".join(" ".join(said_lines).split()):
            assert time.monotonic() < deadline, said_lines
            assert standby.poll() is None, said_lines
            time.sleep(0.05)
        assert standby.poll() is None
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            raise AssertionError("the standby answered while the primary held the lease")
        except httpx.TransportError:
            pass
    finally:
        primary.stop()
    assert standby is not None
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, standby)
        with httpx.Client(base_url=base, timeout=10) as client:
            got = client.get(
                "/v1/events", params={"event_type": "invoice.*"}, headers=bearer(admin)
            ).json()["items"]
            assert sorted(item["event"]["event_id"] for item in got) == sorted(
                event["event_id"] for event in sent
            )
            more = client.post("/v1/events", json=billing_event(3), headers=bearer(admin))
            assert more.status_code == 201, more.text
    finally:
        standby.send_signal(signal.SIGTERM)
        standby.wait(timeout=20)  # its stderr is read by the reader thread alone
        reader.join(timeout=5)
        for stream in (standby.stdout, standby.stderr):
            if stream is not None:
                stream.close()
    stderr = "".join(said_lines)
    assert standby.returncode == 0, stderr
    assert "waiting for its write lease" in " ".join(stderr.split())
