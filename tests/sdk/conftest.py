"""Fixtures of the SDK tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sdk.live import LiveServer


@pytest.fixture(scope="module")
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One real ``indelible run`` for the test module, stopped after its last test."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    server = LiveServer(tmp_path_factory.mktemp(name) / "data")
    try:
        yield server
    finally:
        server.stop()
