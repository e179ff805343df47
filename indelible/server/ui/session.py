"""Web UI sessions: signed cookies naming an API key, and the CSRF tokens bound to them.

A session token is ``<key id>.<expiry ms>.<nonce>.<mac>``, the MAC an HMAC-SHA256 under a
secret kept in the keys directory (``ui-session.secret``, created on first use, mode 0600)
over the key id, the expiry, the nonce and the SHA-256 the store holds for the key. The API
key's token itself is never in the cookie: it is checked once, at login. On every request the
MAC and expiry are checked, then the key is looked up: a revoked or unknown key ends the
session at once. Logout ends a session in this process (a restart forgets which ones ended;
each still expires). Removing the secret file ends every session at the next restart.

A form's CSRF token is an HMAC of the session's nonce (of a short-lived login nonce before
there is a session), so it is worthless to anyone without the session cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from indelible.errors import ConfigError

__all__ = ["LOGIN_COOKIE_SECONDS", "Session", "SessionKeys"]

SECRET_FILE = "ui-session.secret"
LOGIN_COOKIE_SECONDS = 900
_TOKEN = re.compile(r"^([0-9a-f]{16})\.([0-9]{1,16})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")
_LOGIN = re.compile(r"^([0-9]{1,16})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    expires_ms: int
    nonce: str


class SessionKeys:
    """Issues and checks session tokens and CSRF tokens under the secret in ``keys_dir``."""

    def __init__(self, keys_dir: Path) -> None:
        self._path = keys_dir / SECRET_FILE
        self._secret: bytes | None = None
        self._lock = threading.Lock()
        self._ended: dict[str, int] = {}  # nonce → expiry of sessions ended by logout

    def _key(self) -> bytes:
        if self._secret is None:
            with self._lock:
                if self._secret is None:
                    self._secret = _load_or_create(self._path)
        return self._secret

    def _mac(self, purpose: bytes, *parts: bytes) -> str:
        message = b"indelible-ui-" + purpose + b"-v1" + b"".join(b"\x00" + p for p in parts)
        return _b64(hmac.new(self._key(), message, hashlib.sha256).digest())

    # ---- sessions
    def issue(self, key_id: str, secret_hash: bytes, expires_ms: int) -> str:
        nonce = os.urandom(16).hex()
        payload = f"{key_id}.{expires_ms}.{nonce}"
        return f"{payload}.{self._mac(b'session', payload.encode(), secret_hash)}"

    def peek(self, token: str) -> Session | None:
        """The session a token claims, before its MAC is checked (which needs the key's
        hash: :meth:`check`); None when it is not a session token at all."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        return Session(match.group(1), int(match.group(2)), match.group(3))

    def check(self, token: str, secret_hash: bytes, now_ms: int) -> Session | None:
        """The session of ``token`` when its MAC is right and it has not expired."""
        session = self.peek(token)
        if session is None or session.expires_ms <= now_ms:
            return None
        payload, _, mac = token.rpartition(".")
        expected = self._mac(b"session", payload.encode(), secret_hash)
        if not hmac.compare_digest(mac, expected):
            return None
        with self._lock:
            if session.nonce in self._ended:
                return None
        return session

    def end(self, session: Session, now_ms: int) -> None:
        """Refuse ``session`` from now on (logout), in this process, until it expires."""
        with self._lock:
            self._ended = {n: e for n, e in self._ended.items() if e > now_ms}
            self._ended[session.nonce] = session.expires_ms

    def csrf(self, nonce: str) -> str:
        return self._mac(b"csrf", nonce.encode())

    def csrf_ok(self, nonce: str, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(self.csrf(nonce), given)

    # ---- the login form's own nonce (there is no session yet)
    def login_nonce(self, now_ms: int) -> str:
        payload = f"{now_ms + LOGIN_COOKIE_SECONDS * 1000}.{os.urandom(16).hex()}"
        return f"{payload}.{self._mac(b'login', payload.encode())}"

    def check_login_nonce(self, token: str | None, now_ms: int) -> str | None:
        """The nonce of a login cookie still valid, else None."""
        match = _LOGIN.match(token or "")
        if match is None or int(match.group(1)) <= now_ms:
            return None
        payload = f"{match.group(1)}.{match.group(2)}"
        if not hmac.compare_digest(match.group(3), self._mac(b"login", payload.encode())):
            return None
        return match.group(2)


def _load_or_create(path: Path) -> bytes:
    """The 32-byte secret at ``path``, created (exclusively, mode 0600) when missing."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = os.urandom(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return _load_or_create(path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret.hex().encode("ascii") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return secret
    text = raw.decode("ascii", errors="replace").strip()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        # a half-written file (crash between create and write) or a foreign one: refuse
        raise ConfigError(f"{path} is not a web UI session secret (64 hex digits)", setting="data")
    return bytes.fromhex(text)
