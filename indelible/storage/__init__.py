"""Stores: the storage contract (``base``) and its drivers, picked by URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from indelible.errors import ConfigError
from indelible.storage.base import AnchorRow, CheckpointRow, EntryRow, LogInfo, Store

__all__ = [
    "AnchorRow",
    "CheckpointRow",
    "EntryRow",
    "LogInfo",
    "Store",
    "display_url",
    "open_store",
]


def display_url(url: str) -> str:
    """``url`` fit to print: a password in it is replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def open_store(
    url: str, *, create: bool = True, migrate: bool = True, service_role: str | None = None
) -> Store:
    """Open the store named by ``url``: ``sqlite:///path/to/file.db``, a plain path, or
    ``postgresql://user@host/db`` (``service_role``: the PostgreSQL role a migration grants
    the service's privileges to)."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from indelible.storage.postgres import PostgresStore
        except ImportError as exc:  # psycopg is the postgres extra
            raise ConfigError(
                "the PostgreSQL store needs psycopg: pip install 'indelible[postgres]'",
                setting="store",
            ) from exc
        return PostgresStore(url, create=create, migrate=migrate, service_role=service_role)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
    elif url.startswith("sqlite://"):
        raise ConfigError("use sqlite:///PATH (three slashes)", setting="store")
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise ConfigError(f"no store driver for scheme {scheme!r}", setting="store")
    else:
        path = url
    from indelible.storage.sqlite import SQLiteStore

    return SQLiteStore(Path(path), create=create, migrate=migrate)
