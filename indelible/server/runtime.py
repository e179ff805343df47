"""What the HTTP service runs: the store, every tenant's log, API keys, the meta-audit writer.

Life cycle: :meth:`Runtime.open` opens the store (failing fast, before any socket is bound);
:meth:`Runtime.start` opens every tenant's log with its signing key, takes each write lease
and starts each sequencer and publisher (:class:`~indelible.service.hub.Hub`);
:meth:`Runtime.close` drains and stops them in the order that loses nothing, then closes the
store. ``start`` and ``close`` are idempotent, so both the command line and the ASGI lifespan
may call them.

Tenants: each log of the store is one tenant, with its own origin, signing key, API keys and
settings. The first log created is the operator tenant; only its admins manage tenants.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indelible.config import Settings
from indelible.core.event import DEFAULT_LIMITS, Event, Limits
from indelible.errors import AlreadyExists, ConfigError, FormatError, InputError, StoreError
from indelible.service.access import FailureLimiter, KeyRing
from indelible.service.anchoring import AnchorConfig, parse_witnesses
from indelible.service.audit import SYSTEM_ACTOR, AuditWriter, RequestInfo, key_subject
from indelible.service.hub import Hub, HubOptions
from indelible.service.ingest import Receipt
from indelible.service.logs import key_file_exists, valid_name, valid_origin
from indelible.service.stepcache import StepCache
from indelible.storage import open_store
from indelible.storage.base import LogInfo, Store

if TYPE_CHECKING:  # the alerts extra (pyyaml) is imported only when rules are configured
    from indelible.service.alerts.engine import AlertEngine

__all__ = ["TENANT_SETTINGS", "Runtime", "ServerLimits", "UiOptions", "anchor_config"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ServerLimits:
    """Per-request limits of the HTTP service (per-event limits are in ``event``)."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_events: int = 1_000
    event: Limits = DEFAULT_LIMITS
    max_export_events: int = 1_000_000
    max_state_events: int = 100_000
    max_reason_chars: int = 1_024


@dataclass(frozen=True)
class UiOptions:
    """The web UI's settings (``ui``, ``ui_session_minutes``, ``ui_secure_cookie``)."""

    enabled: bool = True
    session_minutes: int = 480
    secure_cookie: str = "auto"  # auto: when the request came over HTTPS; "true"; "false"


# Settings each tenant's admins may change (PATCH /v1/settings): name → (default, type).
TENANT_SETTINGS: dict[str, tuple[Any, type]] = {
    "require_read_reason": (False, bool),
}


def anchor_config(settings: Settings) -> AnchorConfig:
    """Where checkpoints are anchored, from the settings (``ConfigError`` names the bad one)."""
    from indelible.service.timestamping import load_roots

    roots: tuple[bytes, ...] = ()
    if settings.tsa_ca:
        try:
            roots = tuple(load_roots(Path(settings.tsa_ca).read_bytes()))
        except OSError as exc:
            raise ConfigError(f"cannot read {settings.tsa_ca}: {exc}", setting="tsa_ca") from exc
        except FormatError as exc:
            raise ConfigError(exc.message, setting="tsa_ca") from exc
    try:
        witnesses = parse_witnesses(settings.witnesses)
    except FormatError as exc:
        raise ConfigError(exc.message, setting="witnesses") from exc
    urls = tuple(url for url in settings.tsa_urls.split(",") if url)
    try:
        return AnchorConfig(
            tsa_urls=urls,
            tsa_roots=roots,
            tsa_interval=settings.anchor_interval * 60,
            witnesses=witnesses,
            quorum=settings.witness_quorum,
        )
    except FormatError as exc:
        setting = "tsa_ca" if "tsa_ca" in exc.message else "witness_quorum"
        raise ConfigError(exc.message, setting=setting) from exc


class Runtime:
    """The running service parts of one store; built once per server process."""

    def __init__(
        self,
        store: Store,
        keys_dir: Path,
        *,
        clock_ms: Callable[[], int] = _now_ms,
        random_bytes: Callable[[int], bytes] = os.urandom,
        monotonic: Callable[[], float] = time.monotonic,
        max_batch: int = 10_000,
        max_pending: int = 100_000,
        checkpoint_interval: float = 1.0,
        write_timeout: float = 30.0,
        limits: ServerLimits = ServerLimits(),
        auth_fail_limit: int = 10,
        auth_fail_window: float = 60.0,
        close_store: bool = True,
        public_tlog: bool = False,
        anchors: AnchorConfig | None = None,
        wait_for_lease: bool = False,
        ui: UiOptions = UiOptions(),
    ) -> None:
        self.store, self.keys_dir, self.limits, self.clock_ms = store, keys_dir, limits, clock_ms
        self.ui = ui
        self.hub = Hub(
            store,
            keys_dir,
            HubOptions(
                clock_ms=clock_ms,
                random_bytes=random_bytes,
                max_batch=max_batch,
                max_pending=max_pending,
                checkpoint_interval=checkpoint_interval,
                write_timeout=write_timeout,
                anchors=anchors or AnchorConfig(),
                wait_for_lease=wait_for_lease,
            ),
        )
        self.public_tlog = public_tlog
        self.keys = KeyRing(store, clock_ms=clock_ms, random_bytes=random_bytes)
        self.limiter = FailureLimiter(auth_fail_limit, auth_fail_window, clock=monotonic)
        self.audit = AuditWriter(self.hub, clock_ms=clock_ms, random_bytes=random_bytes)
        self.steps = StepCache()  # decoded replay steps of records lately asked for at T
        self._close_store = close_store
        self._state = "created"
        self._lock = threading.Lock()
        self._tenant_settings: dict[int, dict[str, Any]] = {}
        self._tenant_lock = threading.Lock()  # one tenant created at a time: checks, then create
        self.verify_lock = asyncio.Lock()
        # the alert engine (service.alerts), set by the entry point when rules are configured
        self.alerts: AlertEngine | None = None

    @classmethod
    def open(cls, settings: Settings, **options: Any) -> Runtime:
        """Open the configured store; nothing runs yet. The store must hold a log."""
        store = open_store(settings.store_url, create=False)
        try:
            if not store.list_logs():
                raise ConfigError(
                    "the store holds no log: run `indelible init` (or `indelible run`)",
                    setting="store",
                )
        except BaseException:
            store.close()
            raise
        limits = ServerLimits(
            max_body_bytes=settings.max_body_bytes,
            max_events=settings.max_events,
            max_export_events=settings.max_export_events,
            max_state_events=settings.max_state_events,
        )
        options.setdefault("max_batch", settings.max_batch)
        options.setdefault("max_pending", settings.max_pending)
        options.setdefault("checkpoint_interval", settings.checkpoint_interval)
        options.setdefault("auth_fail_limit", settings.auth_fail_limit)
        options.setdefault("auth_fail_window", settings.auth_fail_window)
        options.setdefault("limits", limits)
        options.setdefault("public_tlog", settings.public_tlog)
        options.setdefault("wait_for_lease", settings.lease_wait)
        options.setdefault(
            "ui", UiOptions(settings.ui, settings.ui_session_minutes, settings.ui_secure_cookie)
        )
        try:
            options.setdefault("anchors", anchor_config(settings))
        except BaseException:
            store.close()
            raise
        return cls(store, settings.keys_dir, **options)

    # ---- life cycle
    def start(self) -> None:
        """Open every tenant's log, take its write lease, start its sequencer (once)."""
        with self._lock:
            if self._state != "created":
                return
            self._state = "starting"
        try:
            self.hub.start()
            if self.alerts is not None:
                self.alerts.start()
        except BaseException:
            self.hub.close()
            with self._lock:
                self._state = "closed"
            raise
        with self._lock:
            self._state = "running"

    def close(self) -> None:
        """Drain every sequencer, stop the publishers, sign final checkpoints, close (once)."""
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
        try:
            if self.alerts is not None:
                self.alerts.stop()  # before the logs close: it appends to them
            self.hub.close()
        finally:
            if self._close_store:
                self.store.close()

    def not_ready(self) -> str | None:
        """Why the service cannot take events now, or None when it can."""
        if self._state != "running":
            return "ingest is " + ("shut down" if self._state == "closed" else "not started")
        return self.hub.not_ready()

    # ---- writing events
    async def submit(self, log_id: int, events: list[Event]) -> list[Receipt]:
        """Append to a tenant's log; return once the commit is durable."""
        if self._state != "running":
            raise StoreError("ingest is not running")
        future = self.hub.get(log_id).sequencer.submit(events)
        # Shielded: a client that goes away must not cancel a request the sequencer holds.
        return await asyncio.shield(asyncio.wrap_future(future))

    async def record(self, log_id: int, event_type: str, **fields: Any) -> Receipt:
        """Write one of Indelible's own events (``service.audit``) and wait for its commit.

        ``StoreError`` (503) when it is not committed within ``write_timeout`` seconds: the
        action it records must then fail. (It may still be committed later: an audit trail
        may hold a record of an action that failed, never miss one that happened.)
        """
        event = self.audit.build(event_type, **fields)
        timeout = self.hub.options.write_timeout
        try:
            async with asyncio.timeout(timeout):
                receipts = await self.submit(log_id, [event])
        except TimeoutError:
            raise StoreError(
                f"the {event_type} event was not committed within {timeout} s"
            ) from None
        return receipts[0]

    # ---- tenants and their settings
    def log_info(self, log_id: int) -> LogInfo:
        return self.hub.get(log_id).info

    def tenant_settings(self, log_id: int) -> dict[str, Any]:
        """The tenant's settings, defaults filled in (cached: this process is their writer)."""
        cached = self._tenant_settings.get(log_id)
        if cached is None:
            stored = self.store.get_log_settings(log_id)
            cached = {}
            for name, (default, kind) in TENANT_SETTINGS.items():
                raw = stored.get(name)
                cached[name] = default if raw is None else _decode_setting(raw, kind)
            self._tenant_settings[log_id] = cached
        return dict(cached)

    def set_tenant_setting(self, log_id: int, name: str, value: Any) -> None:
        self.store.set_log_setting(log_id, name, _encode_setting(value))
        self._tenant_settings.pop(log_id, None)

    def create_tenant(self, name: str, origin: str) -> LogInfo:
        """A new tenant: its log and signing key, served from now on."""
        if not valid_name(name):
            raise InputError("a tenant name is 1-63 of a-z 0-9 _ - (starting alphanumeric)")
        if not valid_origin(origin):
            raise InputError("an origin is 1-255 printable ASCII characters, no space or '+'")
        with self._tenant_lock:
            return self._create_tenant(name, origin)

    def _create_tenant(self, name: str, origin: str) -> LogInfo:
        logs = self.store.list_logs()
        if any(info.name == name for info in logs):
            raise AlreadyExists(f"a tenant named {name!r} exists")
        if any(info.origin == origin for info in logs):
            raise AlreadyExists(f"a tenant with origin {origin!r} exists")
        if key_file_exists(self.keys_dir, name):
            raise AlreadyExists(
                f"a signing key for {name!r} exists in the keys directory but no log uses it; "
                "move it away (it may belong to another store) before creating this tenant"
            )
        runtime = self.hub.create(name, origin)
        self.keys.forget_logs()
        return runtime.info

    def tenant_view(self, info: LogInfo) -> dict[str, Any]:
        return {
            "name": info.name,
            "origin": info.origin,
            "vkey": info.vkey,
            "created_at_ms": info.created_at_ms,
            "size": self.store.tree_size(info.log_id),
        }

    # ---- the first start
    def bootstrap_admin(self) -> str | None:
        """When the store has no API key at all, create an admin key of the operator tenant
        and return its token (shown once); otherwise None. Runs after :meth:`start`."""
        if self.store.list_api_keys():
            return None
        operator = self.keys.operator_log_id()
        row, token = self.keys.create(operator, "admin", "bootstrap admin", None)
        try:
            self.audit.write(
                operator,
                "audit.key_created",
                actor=SYSTEM_ACTOR,
                action="create",
                request=RequestInfo(),
                **key_subject(row),
            )
        except BaseException:
            self.keys.revoke(operator, row.key_id)
            raise
        return token


def _decode_setting(raw: str, kind: type) -> Any:
    assert kind is bool  # the only kind of tenant setting so far
    return raw == "true"


def _encode_setting(value: Any) -> str:
    assert isinstance(value, bool)
    return "true" if value else "false"
