"""Access: API keys, roles and the failed-authentication limiter.

An API key is ``idl_<key id>_<secret>``: the key id (16 hex digits) is public and names the
key in the audit trail; the secret is 32 random bytes in unpadded base64url. The store keeps
only SHA-256 of the whole token (the secret is random, so a slow hash adds nothing), and the
token is shown once, when the key is created. Each key belongs to one log (tenant) and has one
role; what each role may do is :data:`GRANTS`, the one table the HTTP edge consults.

Keys are revoked, never deleted. The :class:`KeyRing` caches the rows it has read: this
process is the only writer of its store's keys, so a revocation through it takes effect on
the next request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from indelible.errors import Forbidden, InputError, NotFound, RateLimited, Unauthenticated
from indelible.storage.base import ApiKeyRow, LogInfo, Store

__all__ = [
    "GRANTS",
    "ROLES",
    "FailureLimiter",
    "KeyRing",
    "Permission",
    "Principal",
    "hash_token",
    "key_view",
]

ROLES = ("writer", "reader", "auditor", "admin")
_TOKEN = re.compile(r"^idl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[\x20-\x7e]{1,128}$")


class Permission(StrEnum):
    INGEST = "ingest"  # POST /v1/events
    EVIDENCE = "evidence"  # the log's checkpoint and verification key (not audit data)
    READ = "read"  # query, get, history, state
    EXPORT = "export"  # streaming CSV / NDJSON export
    VERIFY = "verify"  # full verification of the log
    MANAGE = "manage"  # API keys and settings of the key's own tenant
    TENANTS = "tenants"  # create and list tenants: admins of the operator tenant only


_ALL = frozenset(Permission)
GRANTS: dict[str, frozenset[Permission]] = {
    "writer": frozenset({Permission.INGEST, Permission.EVIDENCE}),
    "reader": frozenset({Permission.READ, Permission.EVIDENCE}),
    "auditor": frozenset(
        {Permission.READ, Permission.EXPORT, Permission.VERIFY, Permission.EVIDENCE}
    ),
    "admin": _ALL - {Permission.TENANTS},
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request authenticated as."""

    key_id: str
    name: str
    role: str
    log_id: int
    log_name: str
    operator: bool  # the key belongs to the operator tenant (the first log)

    def allows(self, permission: Permission) -> bool:
        if permission is Permission.TENANTS:
            return self.role == "admin" and self.operator
        return permission in GRANTS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.allows(permission):
            raise Forbidden(f"an API key with role {self.role!r} may not {permission.value}")

    def actor(self) -> dict[str, str]:
        """This principal as an event's ``actor``."""
        return {"id": self.key_id, "type": "service", "name": self.name}


def hash_token(token: str) -> bytes:
    return hashlib.sha256(b"indelible-api-key-v1\x00" + token.encode("ascii")).digest()


def key_view(row: ApiKeyRow, log_name: str) -> dict[str, object]:
    """A key as the API shows it: never the secret, nor its hash."""
    return {
        "key_id": row.key_id,
        "tenant": log_name,
        "name": row.name,
        "role": row.role,
        "created_at_ms": row.created_at_ms,
        "created_by": row.created_by,
        "revoked_at_ms": row.revoked_at_ms,
    }


class KeyRing:
    """Creates, authenticates and revokes API keys of one store."""

    def __init__(
        self,
        store: Store,
        *,
        clock_ms: Callable[[], int],
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self._store, self._clock, self._random = store, clock_ms, random_bytes
        self._cache: dict[str, ApiKeyRow] = {}
        self._logs: dict[int, LogInfo] = {}
        self._operator: int | None = None
        self._lock = threading.Lock()

    def _read_logs(self) -> None:
        logs = self._store.list_logs()
        self._logs = {log.log_id: log for log in logs}
        self._operator = logs[0].log_id if logs else None

    def _log(self, log_id: int) -> LogInfo:
        if log_id not in self._logs:
            self._read_logs()
        return self._logs[log_id]

    def operator_log_id(self) -> int:
        """The operator tenant: the first log created in this store."""
        if self._operator is None:
            self._read_logs()
            if self._operator is None:
                raise NotFound("the store has no log yet")
        return self._operator

    def create(
        self, log_id: int, role: str, name: str, created_by: str | None
    ) -> tuple[ApiKeyRow, str]:
        """A new key and its token (the only time the token exists outside the client)."""
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not _NAME.match(name):
            raise InputError("a key name is 1-128 printable ASCII characters")
        key_id = self._random(8).hex()
        secret = base64.urlsafe_b64encode(self._random(32)).rstrip(b"=").decode("ascii")
        token = f"idl_{key_id}_{secret}"
        row = ApiKeyRow(key_id, log_id, name, role, hash_token(token), self._clock(), created_by)
        self._store.add_api_key(row)
        with self._lock:
            self._cache[key_id] = row
        return row, token

    def authenticate(self, token: str | None) -> Principal:
        """The principal of a bearer token; ``Unauthenticated`` says why it is refused."""
        if not token:
            raise Unauthenticated("an API key is required: send Authorization: Bearer <key>")
        match = _TOKEN.match(token)
        if match is None:
            raise Unauthenticated("the API key is not in the form idl_<id>_<secret>")
        row = self._row(match.group(1))
        if row is None or not hmac.compare_digest(row.secret_hash, hash_token(token)):
            raise Unauthenticated("unknown API key")
        return self.principal_of(row)

    def active(self, key_id: str) -> ApiKeyRow:
        """The row of ``key_id`` while it exists and is not revoked (a web session holds a
        key id, never the token); ``Unauthenticated`` otherwise."""
        row = self._row(key_id)
        if row is None:
            raise Unauthenticated("unknown API key")
        if row.revoked_at_ms is not None:
            raise Unauthenticated("the API key was revoked")
        return row

    def principal_of(self, row: ApiKeyRow) -> Principal:
        """The principal of an authenticated key's row (refused once it is revoked)."""
        if row.revoked_at_ms is not None:
            raise Unauthenticated("the API key was revoked")
        info = self._log(row.log_id)
        return Principal(
            row.key_id,
            row.name,
            row.role,
            row.log_id,
            info.name,
            row.log_id == self.operator_log_id(),
        )

    def _row(self, key_id: str) -> ApiKeyRow | None:
        with self._lock:
            row = self._cache.get(key_id)
        if row is not None:
            return row
        try:
            row = self._store.get_api_key(key_id)
        except NotFound:
            return None
        with self._lock:
            self._cache[key_id] = row
        return row

    def get(self, log_id: int, key_id: str) -> ApiKeyRow:
        """The key ``key_id`` of log ``log_id``; another tenant's key is simply not found."""
        row = self._row(key_id)
        if row is None or row.log_id != log_id:
            raise NotFound(f"no API key {key_id!r}")
        return row

    def revoke(self, log_id: int, key_id: str) -> ApiKeyRow:
        """Revoke a key of ``log_id`` (idempotent); returns the revoked row."""
        row = self.get(log_id, key_id)
        if row.revoked_at_ms is None:
            self._store.revoke_api_key(key_id, self._clock())
        with self._lock:
            self._cache.pop(key_id, None)
        revoked = self._row(key_id)
        assert revoked is not None
        return revoked

    def list(self, log_id: int) -> list[ApiKeyRow]:
        return self._store.list_api_keys(log_id)

    def forget_logs(self) -> None:
        """Re-read the logs on next use (a tenant was created)."""
        self._logs = {}


class FailureLimiter:
    """At most ``limit`` failed authentications per client address in ``window`` seconds.

    Once an address reaches the limit, every request from it is refused (429) until its
    oldest failure leaves the window — a correct guess inside the block gains nothing.
    The table is bounded: past ``max_addresses`` the stalest address is forgotten.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float],
        max_addresses: int = 100_000,
    ) -> None:
        self._limit, self._window, self._clock = limit, window, clock
        self._max = max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        return self._limit

    def check(self, address: str) -> None:
        """Raise ``RateLimited`` while ``address`` is blocked."""
        with self._lock:
            times = self._failures.get(address)
            if times is None:
                return
            now = self._clock()
            while times and times[0] <= now - self._window:
                times.popleft()
            if not times:
                del self._failures[address]
            elif len(times) >= self._limit:
                retry = times[0] + self._window - now
                raise RateLimited(
                    f"too many failed authentications from {address}; retry later",
                    retry_after=max(retry, 0.001),
                )

    def fail(self, address: str) -> bool:
        """Count a failure; True when this one reached the limit (the block starts now)."""
        with self._lock:
            times = self._failures.pop(address, None) or deque()
            times.append(self._clock())
            while len(times) > self._limit:
                times.popleft()
            self._failures[address] = times  # re-inserted: the dict's order is staleness
            while len(self._failures) > self._max:
                del self._failures[next(iter(self._failures))]
            return len(times) == self._limit
