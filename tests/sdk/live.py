"""A real Indelible service for the SDK tests: ``indelible run`` in a subprocess on a fixed
port, which can be stopped and started again on the same data (an outage)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]


class LiveServer:
    """``indelible run --data DATA --port PORT``; ``admin`` and ``vkey`` come from the first
    start's banner, ``writer`` is a writer key made with it."""

    def __init__(self, data: Path, *, checkpoint_interval: float = 0.2) -> None:
        self.data, self.port = data, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, INDELIBLE_CHECKPOINT_INTERVAL=str(checkpoint_interval))
        self.process: subprocess.Popen[str] | None = None
        self.admin = self.vkey = ""
        banner = self.start()
        for line in banner:
            if line.startswith("admin API key (shown once): "):
                self.admin = line.split(": ", 1)[1]
            if line.startswith("verification key (publish it): "):
                self.vkey = line.split(": ", 1)[1]
        assert self.admin and self.vkey, banner
        self.writer = self.make_key("writer")

    def start(self) -> list[str]:
        command = [sys.executable, "-m", "indelible.cli", "run", "--data", str(self.data)]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        banner: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            banner.append(line.rstrip("\n"))
            if line.startswith("serving on"):
                break
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited: {self.process.communicate()}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return banner
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("the server never became healthy")

    def stop(self) -> None:
        """SIGTERM: the server drains and exits 0."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, stderr

    def make_key(self, role: str) -> str:
        answer = httpx.post(
            f"{self.url}/v1/keys",
            json={"name": f"sdk test {role}", "role": role},
            headers={"Authorization": f"Bearer {self.admin}"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["token"])

    def entries(self, event_type: str) -> Iterator[dict[str, Any]]:
        """Every entry of ``event_type`` (a type or a ``prefix.*``), in seq order."""
        headers = {"Authorization": f"Bearer {self.admin}"}
        params: dict[str, Any] = {"event_type": event_type, "limit": 1000}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as http:
            while True:
                page = http.get("/v1/events", params=params)
                assert page.status_code == 200, page.text
                body = page.json()
                yield from body["items"]
                if not body["next_cursor"]:
                    return
                params["cursor"] = body["next_cursor"]

    def counts(self, event_type: str) -> collections.Counter[str]:
        """How many entries of ``event_type`` each event_id has."""
        return collections.Counter(item["event"]["event_id"] for item in self.entries(event_type))
