"""What the HTTP service runs for one log: its store, sequencer and background publisher.

Life cycle: :meth:`Runtime.open` opens the store and the log's signing key (failing fast, before
any socket is bound); :meth:`Runtime.start` takes the log's write lease and starts the
sequencer and the publisher (a :class:`~indelible.service.hub.LogRuntime`); :meth:`Runtime.close`
drains and stops them in the order that loses nothing (``LogRuntime.close``), then closes the
store.

``start`` and ``close`` are idempotent, so both the command line and the ASGI lifespan may
call them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from indelible.config import Settings
from indelible.core.event import DEFAULT_LIMITS, Limits
from indelible.errors import StoreError
from indelible.service.hub import HubOptions, LogRuntime
from indelible.service.ingest import Sequencer
from indelible.service.logs import OpenLog, open_log
from indelible.storage import CheckpointRow, open_store

__all__ = ["IngestLimits", "Runtime"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class IngestLimits:
    """Per-request limits of ``POST /v1/events`` (per-event limits are in ``event``)."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_events: int = 1_000
    event: Limits = DEFAULT_LIMITS


class Runtime:
    """The running service parts of one log; built once per server process."""

    def __init__(
        self,
        opened: OpenLog,
        *,
        clock_ms: Callable[[], int] = _now_ms,
        random_bytes: Callable[[int], bytes] = os.urandom,
        max_batch: int = 10_000,
        max_pending: int = 100_000,
        checkpoint_interval: float = 1.0,
        limits: IngestLimits = IngestLimits(),
        close_store: bool = True,
    ) -> None:
        if opened.signer is None:
            raise StoreError(f"no signing key for log {opened.info.name!r}: cannot publish")
        self.opened, self.limits, self.clock_ms = opened, limits, clock_ms
        self._options = HubOptions(
            clock_ms=clock_ms,
            random_bytes=random_bytes,
            max_batch=max_batch,
            max_pending=max_pending,
            checkpoint_interval=checkpoint_interval,
        )
        self._close_store = close_store
        self._log: LogRuntime | None = None
        self._state = "created"
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, **options: Any) -> Runtime:
        """Open the configured store and log, with its signing key; nothing runs yet."""
        store = open_store(settings.store_url, create=False)
        try:
            opened = open_log(store, settings.keys_dir, settings.log, need_signer=True)
        except BaseException:
            store.close()
            raise
        options.setdefault("max_batch", settings.max_batch)
        options.setdefault("max_pending", settings.max_pending)
        options.setdefault("checkpoint_interval", settings.checkpoint_interval)
        return cls(opened, **options)

    # ---- life cycle
    def start(self) -> None:
        """Take the write lease, start the sequencer and the publisher (once)."""
        with self._lock:
            if self._state != "created":
                return
            self._log = LogRuntime(self.opened, self._options)
            self._state = "running"

    def close(self) -> None:
        """Drain the sequencer, stop the publisher, sign a final checkpoint, close (once)."""
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
        try:
            if self._log is not None:
                self._log.close()
        finally:
            if self._close_store:
                self.opened.store.close()

    # ---- what the routes use
    @property
    def sequencer(self) -> Sequencer:
        """The running sequencer (``StoreError``, 503, when not running)."""
        if self._state != "running" or self._log is None:
            raise StoreError("ingest is not running")
        return self._log.sequencer

    def latest_checkpoint(self) -> CheckpointRow | None:
        return self.opened.store.latest_checkpoint(self.opened.info.log_id)

    def not_ready(self) -> str | None:
        """Why the service cannot take events now, or None when it can."""
        if self._state != "running" or self._log is None:
            return f"ingest is {'not started' if self._state == 'created' else 'shut down'}"
        return self._log.not_ready()
