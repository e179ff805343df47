"""The SDK installs and works without the server's dependencies.

A fresh virtual environment gets ``pip install '<copy of the project>[sdk]'`` (from the
machine's package index), must NOT have fastapi, uvicorn, psycopg or jinja2, and there
``import indelible.sdk`` records an event to an outbox, without importing any server module.
About 20 s (creating the environment and installing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.sdk.live import ROOT

SCRIPT = """
import importlib.util, json, sys
absent = [m for m in ("fastapi", "uvicorn", "psycopg", "jinja2")
          if importlib.util.find_spec(m) is not None]
from indelible.sdk import Client
client = Client(None, outbox=sys.argv[1], default_actor={"id": "app", "type": "service"})
event_id = client.record("invoice.voided", target={"type": "invoice", "id": "INV-1"})
pending = client.pending()
client.close()
loaded = sorted(m for m in sys.modules if m.startswith("indelible."))
print(json.dumps({"present": absent, "event_id": event_id, "pending": pending,
                  "loaded": loaded, "file": __import__("indelible").__file__}))
"""


@pytest.mark.slow
def test_sdk_extra_installs_and_records_without_the_server_dependencies(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "indelible",
        source / "indelible",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"{source}[sdk]"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    ran = subprocess.run(
        [str(python), "-c", SCRIPT, str(tmp_path / "outbox.sqlite3")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout)
    assert found["present"] == [], "server dependencies came with the sdk extra"
    assert found["file"].startswith(str(env_dir))  # the installed copy, not the worktree
    assert found["pending"] == 1 and len(found["event_id"]) == 36
    server_side = [
        m
        for m in found["loaded"]
        if m.split(".")[1] in ("server", "service", "storage", "cli", "config")
    ]
    assert server_side == []
