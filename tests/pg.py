"""A real PostgreSQL server for the tests, and throwaway databases and roles on it.

The server is the one named by ``INDELIBLE_TEST_PG`` (a libpq URL of a superuser), else the
local one at 127.0.0.1:5432 (trust auth, user ``postgres``). When none answers and the
PostgreSQL binaries are installed, a cluster of its own is created with ``initdb`` in a
temporary directory and started with ``pg_ctl`` on a free loopback port (as the ``postgres``
system user when the tests run as root, since ``initdb`` refuses root).

When no server can be had, tests that need one are skipped with the reason, except under
``CI=true``, where that is a failure: a skipped real-server test proves nothing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.net import free_port

DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server the tests may do anything on, reached as a superuser."""

    host: str
    port: int
    user: str
    dbname: str
    started_here: bool = False

    def url(self, *, user: str | None = None, dbname: str | None = None) -> str:
        return f"postgresql://{user or self.user}@{self.host}:{self.port}/{dbname or self.dbname}"

    def admin(self, dbname: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(dbname=dbname), autocommit=True, connect_timeout=5)


def _answers(url: str) -> str | None:
    """None when ``url`` accepts a superuser connection, else why not."""
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            found = row.fetchone()
            if not (found and found[0]):
                return f"{url} answers but its user is not a superuser"
    except psycopg.Error as exc:
        return f"{url}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
    return None


def _parse(url: str) -> Server:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return Server(
        host=str(info.get("host", "127.0.0.1")),
        port=int(info.get("port", 5432)),
        user=str(info.get("user", "postgres")),
        dbname=str(info.get("dbname", "postgres")),
    )


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl, if PostgreSQL's server binaries are installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


@contextlib.contextmanager
def own_cluster(*, fsync: bool = True) -> Iterator[Server]:
    """initdb + pg_ctl start in a directory of its own; stopped and removed afterwards.

    The directory is made directly under the system's temporary folder: pytest's own is
    private to the user running the tests, whom ``initdb`` may not be.
    """
    found = binaries()
    if found is None:
        raise RuntimeError("no PostgreSQL answers and initdb/pg_ctl are not installed")
    folder = found
    base = Path(tempfile.mkdtemp(prefix="indelible-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise RuntimeError("running as root and there is no postgres user for initdb") from exc
        prefix = ["runuser", "-u", "postgres", "--"]
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, port = base / "cluster", free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        [*prefix, str(folder / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        **run,  # type: ignore[call-overload]
    )
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}"
    )
    # the server's output goes to a log file: a pipe would be held open by the postmaster
    server_log = base / "server.log"
    start = ["-o", options, "-l", str(server_log), "-w", "-t", "60", "start"]
    subprocess.run(
        [*prefix, str(folder / "pg_ctl"), "-D", str(data), *start],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    try:
        yield Server("127.0.0.1", port, "postgres", "postgres", started_here=True)
    finally:
        subprocess.run(
            [*prefix, str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


def unavailable(reason: str) -> None:
    """Skip (loudly) outside CI; fail under CI=true."""
    message = f"PostgreSQL is not available: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (under CI=true a skipped real-server test is a failure)")
    pytest.skip(message)


@contextlib.contextmanager
def server() -> Iterator[Server | str]:
    """The test server, or the reason there is none."""
    url = os.environ.get("INDELIBLE_TEST_PG", DEFAULT_ADMIN)
    why = _answers(url)
    if why is None:
        yield _parse(url)
        return
    try:
        with own_cluster() as own:
            yield own
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        detail = (
            exc.stderr.decode(errors="replace") if hasattr(exc, "stderr") and exc.stderr else ""
        )
        yield f"{why}; and no cluster could be started here: {exc} {detail}".strip()


@dataclass(frozen=True)
class Database:
    """A throwaway database with an owner role and an INSERT/SELECT service role."""

    server: Server
    name: str
    owner: str
    service: str

    @property
    def admin_url(self) -> str:
        return self.server.url(dbname=self.name)

    @property
    def owner_url(self) -> str:
        return self.server.url(user=self.owner, dbname=self.name)

    @property
    def service_url(self) -> str:
        return self.server.url(user=self.service, dbname=self.name)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return self.server.admin(self.name)


@contextlib.contextmanager
def database(srv: Server) -> Iterator[Database]:
    """CREATE DATABASE with fresh owner and service roles; all dropped afterwards."""
    tag = secrets.token_hex(4)
    db = Database(srv, f"indelible_t_{tag}", f"indelible_owner_{tag}", f"indelible_svc_{tag}")
    with srv.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(db.owner)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(db.service)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(db.name), sql.Identifier(db.owner)
            )
        )
    try:
        yield db
    finally:
        with srv.admin() as conn:
            for attempt in range(5):
                try:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(db.name)
                        )
                    )
                    break
                except psycopg.Error:
                    time.sleep(0.2 * (attempt + 1))
            for role in (db.service, db.owner):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
