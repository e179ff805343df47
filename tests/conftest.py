"""Shared fixtures: real stores in temporary directories, the CLI in process."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from indelible.cli import main


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, stdin: bytes | None = None) -> CliResult:
    """Run `indelible ARGS` in process and capture its output and exit code."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        sys.stdin = old_stdin
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_cli


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path


@pytest.fixture(autouse=True)
def _no_indelible_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("INDELIBLE_"):
            monkeypatch.delenv(key)


# ---- RFC 3161: real `openssl ts` time-stamping authorities on loopback (tests/tsa.py)
from tests.tsa import TSA, start_tsa  # noqa: E402


@pytest.fixture(scope="session")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TSA]:
    """A TSA with its own root CA, shared by the session; misbehaves at ``tsa.url_for(mode)``."""
    with start_tsa(tmp_path_factory.mktemp("tsa"), "test") as running:
        yield running


@pytest.fixture(scope="session")
def foreign_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TSA]:
    """A second, independent TSA under an unrelated root CA (for tamper tests)."""
    with start_tsa(tmp_path_factory.mktemp("foreign-tsa"), "foreign") as running:
        yield running


# ---- PostgreSQL: the real server (tests/pg.py); skipped loudly outside CI, a failure under it
from tests import pg  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.Server]:
    with pg.server() as found:
        if isinstance(found, str):
            pg.unavailable(found)
        assert isinstance(found, pg.Server)
        yield found


@pytest.fixture
def pg_database(pg_server: pg.Server) -> Iterator[pg.Database]:
    """A fresh database with its own owner and service roles, dropped afterwards."""
    with pg.database(pg_server) as db:
        yield db
