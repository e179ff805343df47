"""Opening a log: its store row, its Ed25519 signing key, its origin.

The signing key lives in ``<keys dir>/<log name>.skey`` (C2SP/Go note private-key form),
created with mode 0600 and never logged. The verification key (vkey) is public and is also
kept in the store so verification needs nothing but the store and, ideally, a vkey the
verifier obtained independently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from indelible.core.note import (
    Signer,
    Verifier,
    format_skey,
    format_vkey,
    generate_signer,
    parse_skey,
    parse_vkey,
)
from indelible.errors import ConfigError, NotFound
from indelible.storage.base import LogInfo, Store

__all__ = [
    "OpenLog",
    "default_origin",
    "init_log",
    "key_file_exists",
    "open_log",
    "valid_name",
    "valid_origin",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ORIGIN = re.compile(r"^[\x21-\x2a\x2c-\x7e]{1,255}$")  # printable ASCII, no space, no '+'


@dataclass(frozen=True)
class OpenLog:
    store: Store
    info: LogInfo
    verifier: Verifier
    signer: Signer | None


def default_origin(hostname: str, name: str) -> str:
    host = re.sub(r"[^a-z0-9.-]", "-", hostname.lower()).strip("-.") or "localhost"
    return f"{host}/indelible/{name}"


def _key_path(keys_dir: Path, name: str) -> Path:
    return keys_dir / f"{name}.skey"


def valid_name(name: str) -> bool:
    """A log (tenant) name: 1-63 of a-z 0-9 _ - starting alphanumeric."""
    return _NAME.match(name) is not None


def valid_origin(origin: str) -> bool:
    """A checkpoint origin: printable ASCII without spaces or '+'."""
    return _ORIGIN.match(origin) is not None


def key_file_exists(keys_dir: Path, name: str) -> bool:
    return _key_path(keys_dir, name).exists()


def init_log(
    store: Store,
    keys_dir: Path,
    name: str,
    origin: str,
    *,
    clock_ms: Callable[[], int],
    random_bytes: Callable[[int], bytes],
) -> OpenLog:
    """Create a log and its signing key. Refuses to overwrite an existing key file."""
    if not valid_name(name):
        raise ConfigError(
            "log names are 1-63 of a-z 0-9 _ - (starting alphanumeric)", setting="log"
        )
    if not valid_origin(origin):
        raise ConfigError("an origin is printable ASCII without spaces or '+'", setting="origin")
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer = generate_signer(origin, random_bytes(32))
    path = _key_path(keys_dir, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(
            f"{path} already exists; refusing to overwrite a key", setting="log"
        ) from exc
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(format_skey(signer) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    verifier = signer.verifier()
    info = store.create_log(name, origin, format_vkey(verifier), clock_ms())
    return OpenLog(store, info, verifier, signer)


def open_log(
    store: Store, keys_dir: Path | None, name: str, *, need_signer: bool = False
) -> OpenLog:
    """Open an existing log; load its signing key when ``keys_dir`` is given."""
    info = store.get_log(name)
    verifier = parse_vkey(info.vkey)
    signer: Signer | None = None
    if keys_dir is not None:
        path = _key_path(keys_dir, name)
        try:
            signer = parse_skey(path.read_text(encoding="utf-8").strip())
        except FileNotFoundError:
            if need_signer:
                raise NotFound(f"signing key {path} not found") from None
        if signer is not None and format_vkey(signer.verifier()) != info.vkey:
            raise ConfigError(f"{path} does not match the log's verification key", setting="keys")
    return OpenLog(store, info, verifier, signer)
