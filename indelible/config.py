"""Settings, declared once: name, default, parser and help.

The same table feeds CLI flags, ``INDELIBLE_<NAME>`` environment variables, the optional TOML
config file (``--config FILE`` or ``INDELIBLE_CONFIG``; top-level keys are the setting names),
the docs (docs/operations.md lists every setting; a test fails when one is missing) and
validation. Precedence is defaults < file < environment < explicit overrides. A bad value, or an
unknown key in the file, fails at start-up naming the setting. Secrets are never printed.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


def _addresses(text: str) -> str:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    for part in parts:
        if part != "*":
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or network") from None
    return ",".join(parts)


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError("must be true or false")
    return value in ("true", "1", "yes", "on")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _urls(text: str) -> str:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    for part in parts:
        if not part.startswith(("http://", "https://")) or any(c.isspace() for c in part):
            raise ValueError(f"{part!r} is not an http:// or https:// URL")
    return ",".join(parts)


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65_535:
        raise ValueError("must be a TCP port from 1 to 65535")
    return value


def _cookie_mode(text: str) -> str:
    value = text.strip().lower()
    if value not in ("auto", "true", "false"):
        raise ValueError("must be auto, true or false")
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
    Setting(
        "forwarded_allow_ips",
        "",
        _addresses,
        "Comma-separated addresses of reverse proxies whose X-Forwarded-For names the client; "
        "empty: the header is ignored and the client is the TCP peer.",
    ),
    Setting(
        "max_body_bytes",
        8 * 1024 * 1024,
        _positive_int,
        "Largest request body POST /v1/events accepts (413 beyond it).",
    ),
    Setting("max_events", 1000, _positive_int, "Most events one ingest request may carry."),
    Setting(
        "auth_fail_limit",
        10,
        _positive_int,
        "Failed authentications allowed per client address per window; beyond it 429.",
    ),
    Setting(
        "auth_fail_window",
        60.0,
        _positive_float,
        "Seconds over which failed authentications are counted for `auth_fail_limit`.",
    ),
    Setting(
        "max_export_events",
        1_000_000,
        _positive_int,
        "Most events one CSV/NDJSON export may stream (413 beyond it: narrow the filter).",
    ),
    Setting(
        "max_state_events",
        100_000,
        _positive_int,
        "Most events replayed to rebuild one record's state at time T.",
    ),
    Setting(
        "public_tlog",
        False,
        _bool,
        "Serve each tenant's checkpoint and hash tiles under /tlog/ without an API key "
        "(entry bundles always need one).",
    ),
    Setting(
        "tsa_urls",
        "",
        _urls,
        "Comma-separated RFC 3161 time-stamping authority URLs checkpoints are sent to; "
        "empty: no timestamping.",
    ),
    Setting(
        "tsa_ca",
        "",
        str,
        "PEM file of the root certificates the authorities' tokens must chain to "
        "(needed with tsa_urls).",
    ),
    Setting(
        "anchor_interval",
        10.0,
        _positive_float,
        "Minutes between timestamp requests: at most one per authority per interval.",
    ),
    Setting(
        "witnesses",
        "",
        str,
        "Comma-separated 'URL VKEY' pairs: C2SP tlog-witness URLs (the add-checkpoint "
        "prefix) and their cosigner verification keys.",
    ),
    Setting(
        "witness_quorum",
        0,
        _non_negative_int,
        "How many of the witnesses must cosign a checkpoint before it is final (published); "
        "0 means all of them.",
    ),
    Setting(
        "lease_wait",
        False,
        _bool,
        "When another process holds a log's write lease, wait for it instead of exiting: a "
        "standby that starts serving when that process stops.",
    ),
    Setting("ui", True, _bool, "Serve the web UI at / (the JSON API is served either way)."),
    Setting(
        "ui_session_minutes",
        480,
        _positive_int,
        "Lifetime of a web UI session from its login, in minutes; a session also ends at "
        "logout and as soon as its API key is revoked.",
    ),
    Setting(
        "ui_secure_cookie",
        "auto",
        _cookie_mode,
        "Mark the web UI's session cookie Secure: auto (when the request came over HTTPS, as "
        "the server or a trusted proxy sees it), true, or false.",
    ),
    Setting(
        "alert_rules",
        "",
        str,
        "YAML file of alert rules and notification sinks (docs/alerts.md); empty: no alerting. "
        "Reloaded when it changes.",
    ),
    Setting(
        "alert_checkpoint_stall",
        60.0,
        _positive_float,
        "Seconds the tree may grow without a new signed checkpoint before the integrity alert "
        "checkpoint_stalled.",
    ),
    Setting(
        "pg_service_role",
        "",
        str,
        "PostgreSQL role the service connects as; `indelible init` (run as the schema's owner) "
        "grants it INSERT and SELECT on the log's tables and nothing that rewrites them.",
    ),
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
    forwarded_allow_ips: str
    max_body_bytes: int
    max_events: int
    auth_fail_limit: int
    auth_fail_window: float
    max_export_events: int
    max_state_events: int
    public_tlog: bool
    tsa_urls: str
    tsa_ca: str
    anchor_interval: float
    witnesses: str
    witness_quorum: int
    lease_wait: bool
    ui: bool
    ui_session_minutes: int
    ui_secure_cookie: str
    alert_rules: str
    alert_checkpoint_stall: float
    pg_service_role: str

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
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Defaults, then the config file, then ``INDELIBLE_*`` variables, then explicit overrides.

    The file is *config_file*, else ``INDELIBLE_CONFIG``, else none. Overrides that are
    ``None`` are ignored. Raises `ConfigError` naming the bad setting (``config`` when the
    file itself cannot be read or parsed).
    """
    env = os.environ if environ is None else environ
    given = {name: value for name, value in (overrides or {}).items() if value is not None}
    unknown = set(overrides or {}) - {setting.name for setting in SETTINGS}
    if unknown:
        raise ConfigError("unknown setting", setting=sorted(unknown)[0])
    path = config_file if config_file is not None else env.get("INDELIBLE_CONFIG") or None
    from_file = _read_file(Path(path)) if path is not None else {}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        value: Any = setting.default
        if setting.name in from_file:
            value = _coerce(setting, from_file[setting.name], f"in {path}")
        raw = env.get(f"INDELIBLE_{setting.name.upper()}")
        if raw is not None:
            value = _parse(setting, raw, f"from INDELIBLE_{setting.name.upper()}")
        if setting.name in given:
            value = _coerce(setting, given[setting.name], "given")
        values[setting.name] = value
    return Settings(**values)


def _read_file(path: Path) -> dict[str, Any]:
    """The top-level table of the TOML file at *path*; every key must name a setting."""
    try:
        table = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", setting="config") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}", setting="config") from exc
    known = {setting.name for setting in SETTINGS}
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown setting in {path}", setting=key)
    return table


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _coerce(setting: Setting, value: Any, source: str) -> Any:
    """Validate a native value (from TOML or a caller) with the setting's parser and limits.

    Strings go through the parser as environment values do; an int or float is accepted where
    the default has that type (an int also where a float is expected); a bool never is.
    """
    if isinstance(value, str):
        return _parse(setting, value, source)
    kind = type(setting.default)
    if kind is bool and isinstance(value, bool):
        return value
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and (isinstance(value, kind) or (kind is float and isinstance(value, int))):
        return _parse(setting, str(value), source)
    raise ConfigError(
        f"invalid value {value!r} ({source}): must be {_KIND_NAMES.get(kind, kind.__name__)}",
        setting=setting.name,
    )


def _parse(setting: Setting, raw: str, source: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"invalid value {raw!r} ({source}): {exc}", setting=setting.name) from exc
