"""Debian's Chromium for the browser tests, driven by Playwright through ``executable_path``.

Playwright's own browser downloads are never used. ``make chromium`` (which ``make test`` runs
first) installs the ``chromium`` package when it is missing and apt-get can be used. When no
Chromium can be had, browser tests are skipped with the reason, except under ``CI=true``,
where that is a failure: a skipped browser test proves nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

__all__ = ["ARGS", "ARTIFACTS", "chromium_path", "unavailable"]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# read at import: the tests' autouse fixture clears INDELIBLE_* variables
_GIVEN = os.environ.get("INDELIBLE_TEST_CHROMIUM")


def chromium_path() -> str | None:
    """``INDELIBLE_TEST_CHROMIUM``, else /usr/bin/chromium, else a chromium on PATH."""
    given = _GIVEN
    if given:
        return given if os.access(given, os.X_OK) else None
    candidates = ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def unavailable(reason: str) -> None:
    """Skip loudly, or fail under CI."""
    message = f"browser tests need Chromium: {reason} (run `make chromium` as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
