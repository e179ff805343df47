"""The running logs of one store: a sequencer and a publisher per log (tenant).

Each tenant has its own log, origin and signing key. :class:`Hub` opens every log of the
store, takes each one's write lease and runs its :class:`LogRuntime`; new tenants join while
it runs. Closing loses nothing, log by log:

1. the sequencer stops taking requests and commits every request already queued, answering
   each one (``Sequencer.close`` drains, then releases the write lease);
2. the publisher's thread stops;
3. one last checkpoint is signed, so the newest signed checkpoint covers every acknowledged
   event (a failure here is logged: the events are durable, only unpublished).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from indelible.core.event import Event
from indelible.errors import IndelibleError, NotFound, StoreError
from indelible.service.anchoring import AnchorConfig, Anchorer, FinalCheckpoint, final_checkpoint
from indelible.service.ingest import Publisher, Receipt, Sequencer
from indelible.service.logs import OpenLog, init_log, open_log
from indelible.service.proofs import TileCache
from indelible.storage.base import CheckpointRow, LogInfo, Store

__all__ = ["Hub", "HubOptions", "LogRuntime"]

log = logging.getLogger("indelible.service")


@dataclass(frozen=True)
class HubOptions:
    clock_ms: Callable[[], int]
    random_bytes: Callable[[int], bytes]
    max_batch: int = 10_000
    max_pending: int = 100_000
    checkpoint_interval: float = 1.0
    write_timeout: float = 30.0  # how long a server-written event may wait for its commit
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    wait_for_lease: bool = False  # a standby: wait for another process's write lease


class LogRuntime:
    """One log's sequencer, background publisher and anchorer, and its tile cache."""

    def __init__(self, opened: OpenLog, options: HubOptions) -> None:
        if opened.signer is None:
            raise StoreError(f"no signing key for log {opened.info.name!r}: cannot publish")
        self.opened, self._options = opened, options
        self.sequencer = Sequencer(
            opened.store,
            opened.info,
            clock_ms=options.clock_ms,
            random_bytes=options.random_bytes,
            max_batch=options.max_batch,
            max_pending=options.max_pending,
            wait_for_lease=options.wait_for_lease,
        )
        self.publisher = Publisher(
            opened.store,
            opened.info,
            opened.signer,
            clock_ms=options.clock_ms,
            interval=options.checkpoint_interval,
        )
        self.tiles = TileCache()
        self.anchorer: Anchorer | None = None
        if options.anchors.enabled:
            self.anchorer = Anchorer(
                opened.store,
                opened.info,
                options.anchors,
                clock_ms=options.clock_ms,
                interval=options.checkpoint_interval,
            )
        self._final: FinalCheckpoint | None = None
        self.publisher.start()
        if self.anchorer is not None:
            self.anchorer.start()

    def final_checkpoint(self) -> FinalCheckpoint | None:
        """The newest checkpoint that meets the witness policy, cosignatures appended."""
        found = final_checkpoint(
            self.opened.store, self.info.log_id, self._options.anchors, self._final
        )
        if found is not None:
            self._final = found
        return found

    @property
    def info(self) -> LogInfo:
        return self.opened.info

    def append(self, events: list[Event]) -> list[Receipt]:
        """Append and wait for the durable commit (server-written events)."""
        return self.sequencer.append(events, timeout=self._options.write_timeout)

    def latest_checkpoint(self) -> CheckpointRow | None:
        return self.opened.store.latest_checkpoint(self.info.log_id)

    def not_ready(self) -> str | None:
        halted = self.sequencer.halted
        if halted is not None:
            return f"log {self.info.name}: {halted.message}"
        error = self.publisher.last_error
        if error is not None:
            return f"log {self.info.name}: the publisher failed: [{error.code}] {error.message}"
        return None

    def close(self) -> None:
        try:
            self.sequencer.close()
        finally:
            self.publisher.stop()
            if self.anchorer is not None:
                self.anchorer.stop()
        try:
            self.publisher.publish()
        except IndelibleError as exc:
            log.error(
                "log %s: could not sign the final checkpoint: [%s] %s",
                self.info.name,
                exc.code,
                exc.message,
            )


class Hub:
    """Every log of a store, running; tenants can be added while it runs."""

    def __init__(self, store: Store, keys_dir: Path, options: HubOptions) -> None:
        self.store, self._keys_dir, self.options = store, keys_dir, options
        self._logs: dict[int, LogRuntime] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Open and start every log of the store (a missing signing key fails here)."""
        for info in self.store.list_logs():
            with self._lock:
                if info.log_id in self._logs:
                    continue
            opened = open_log(self.store, self._keys_dir, info.name, need_signer=True)
            runtime = LogRuntime(opened, self.options)
            with self._lock:
                self._logs[info.log_id] = runtime

    def get(self, log_id: int) -> LogRuntime:
        with self._lock:
            runtime = self._logs.get(log_id)
            closed = self._closed
        if closed:
            raise StoreError("ingest is shut down")
        if runtime is None:
            raise NotFound(f"log {log_id} is not served here")
        return runtime

    def by_name(self, name: str) -> LogRuntime:
        """The served log of the tenant called ``name`` (``NotFound`` when there is none)."""
        for runtime in self.logs():
            if runtime.info.name == name:
                return runtime
        raise NotFound(f"no tenant named {name!r} is served here")

    def logs(self) -> list[LogRuntime]:
        with self._lock:
            return [self._logs[log_id] for log_id in sorted(self._logs)]

    def create(self, name: str, origin: str) -> LogRuntime:
        """Create a tenant's log and signing key, and start serving it."""
        with self._lock:
            if self._closed:
                raise StoreError("ingest is shut down")
        opened = init_log(
            self.store,
            self._keys_dir,
            name,
            origin,
            clock_ms=self.options.clock_ms,
            random_bytes=self.options.random_bytes,
        )
        runtime = LogRuntime(opened, self.options)
        with self._lock:
            self._logs[opened.info.log_id] = runtime
        return runtime

    def not_ready(self) -> str | None:
        for runtime in self.logs():
            reason = runtime.not_ready()
            if reason is not None:
                return reason
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            runtimes, self._logs = list(self._logs.values()), {}
        failure: BaseException | None = None
        for runtime in runtimes:
            try:
                runtime.close()
            except BaseException as exc:  # close the others all the same
                failure = failure or exc
        if failure is not None:
            raise failure
