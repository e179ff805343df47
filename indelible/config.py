"""Settings, declared once: name, default, parser and help.

The same table feeds CLI flags, ``INDELIBLE_<NAME>`` environment variables, the docs
(docs/operations.md lists every setting; a test fails when one is missing) and validation:
a bad value fails at start-up naming the setting. Secrets are never printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from indelible.errors import ConfigError

__all__ = ["SETTINGS", "Setting", "Settings", "load_settings"]


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str], Any]
    help: str


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _host(text: str) -> str:
    host = text.strip()
    if not host or any(char.isspace() for char in host):
        raise ValueError("must be a host name or IP address without spaces")
    return host


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65_535:
        raise ValueError("must be a TCP port from 1 to 65535")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting("data", "./data", str, "Directory holding the store and the signing keys."),
    Setting(
        "store",
        "",
        str,
        "Store URL; empty means sqlite:///<data>/indelible.db (the embedded default).",
    ),
    Setting("log", "default", str, "Name of the log (tenant) a command works on."),
    Setting(
        "checkpoint_interval",
        1.0,
        _positive_float,
        "Seconds between checkpoint signings while the tree grows.",
    ),
    Setting("max_batch", 10_000, _positive_int, "Most events one group commit may hold."),
    Setting(
        "max_pending",
        100_000,
        _positive_int,
        "Most events waiting for the sequencer; beyond it ingest answers 503 (overloaded).",
    ),
    Setting(
        "verify_workers",
        os.cpu_count() or 1,
        _positive_int,
        "Processes `indelible verify` uses for large logs.",
    ),
    Setting("host", "127.0.0.1", _host, "Address the HTTP service listens on."),
    Setting("port", 8700, _port, "TCP port the HTTP service listens on."),
)


@dataclass(frozen=True)
class Settings:
    data: str
    store: str
    log: str
    checkpoint_interval: float
    max_batch: int
    max_pending: int
    verify_workers: int
    host: str
    port: int

    @property
    def data_dir(self) -> Path:
        return Path(self.data)

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.data_dir / 'indelible.db'}"


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then ``INDELIBLE_*`` environment variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        value: Any = setting.default
        raw = env.get(f"INDELIBLE_{setting.name.upper()}")
        if raw is not None:
            value = _parse(setting, raw)
        given = (overrides or {}).get(setting.name)
        if given is not None:
            value = _parse(setting, given) if isinstance(given, str) else given
        values[setting.name] = value
    known = {f.name for f in fields(Settings)}
    unknown = set(overrides or {}) - known
    if unknown:
        raise ConfigError("unknown setting", setting=sorted(unknown)[0])
    return Settings(**values)


def _parse(setting: Setting, raw: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"invalid value {raw!r}: {exc}", setting=setting.name) from exc
