"""Finding Chromium for the browser tests: skipped loudly without it, a failure under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import browser


def test_without_chromium_the_browser_tests_skip_outside_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make chromium"):
        browser.unavailable("no chromium here")


def test_without_chromium_the_browser_tests_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no chromium here"):
        browser.unavailable("no chromium here")


def test_a_named_chromium_must_be_executable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "chromium"
    monkeypatch.setattr(browser, "_GIVEN", str(missing))
    assert browser.chromium_path() is None
    missing.write_text("#!/bin/sh\n")
    missing.chmod(0o755)
    assert browser.chromium_path() == str(missing)
