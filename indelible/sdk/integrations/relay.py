"""The relay: committed rows of the application's ``indelible_outbox`` into the client.

The model integrations write each change's event into the ``indelible_outbox`` table of the
application's own database, inside the application's transaction. The relay, a daemon thread,
reads committed rows oldest first, hands their events to ``client.record_relayed`` (one durable
commit of the client's outbox, which then sends them; a client without it gets
``record_built``), and only then deletes the rows. ``record_relayed`` checks each event in full
again (the rows are plain JSON in the application's database) and sets a refused one aside in
the client's ``rejected`` table, logged as an error, so it never holds back the rows behind it. A
crash between the two sends the rows again: at least once into the client, and exactly once
in the log, because the log keeps one entry per ``event_id``.

It wakes when a capturing transaction commits (:meth:`Relay.wake`), and every
``poll_interval`` seconds anyway (commits from other processes, rows left by a crash). A
failure (the client's outbox full, the database away) is logged and retried with exponential
backoff and jitter; the rows stay where they are meanwhile.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

__all__ = ["OutboxAccess", "Recorder", "Relay"]

log = logging.getLogger("indelible.sdk.relay")


class OutboxAccess(Protocol):
    """The ``indelible_outbox`` table of one database, as the relay uses it."""

    def fetch(self, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` committed rows ``(id, event JSON)``, lowest id first."""
        ...

    def delete(self, ids: Sequence[int]) -> None:
        """Delete these rows, committed when it returns."""
        ...

    def close(self) -> None:
        """Release connections held for the relay's thread."""
        ...


class Recorder(Protocol):
    """What the relay needs of a client: one durable outbox commit per call."""

    def record_built(self, events: list[dict[str, Any]]) -> Any: ...


class Relay:
    """Moves committed ``indelible_outbox`` rows into a client's durable outbox."""

    def __init__(
        self,
        access: OutboxAccess,
        client: Recorder,
        *,
        batch: int = 500,
        poll_interval: float = 1.0,
        linger: float = 0.05,
        max_backoff: float = 30.0,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        if poll_interval <= 0 or linger < 0 or max_backoff <= 0:
            raise ValueError("poll_interval and max_backoff must be positive, linger not negative")
        self._access, self._client = access, client
        self._batch, self._poll, self._linger, self._max_backoff = (
            batch,
            poll_interval,
            linger,
            max_backoff,
        )
        self._woken = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # one drain at a time in this process
        self._thread: threading.Thread | None = None
        self.relayed = 0
        self.refused = 0
        self.last_error: BaseException | None = None

    def start(self) -> Relay:
        """Start the background thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="indelible-outbox-relay", daemon=True
            )
            self._thread.start()
        return self

    def wake(self) -> None:
        """Ask the thread to look now: a capturing transaction committed."""
        self._woken.set()

    def drain(self) -> int:
        """Move every committed row now, in this thread; the number moved.

        Raises what the database or the client raised; the rows not yet moved stay.
        """
        moved = 0
        with self._lock:
            while True:
                rows = self._access.fetch(self._batch)
                if not rows:
                    return moved
                relayed = getattr(self._client, "record_relayed", None)
                if relayed is not None:  # each row checked: a bad one is set aside, kept
                    self.refused += relayed([body for _, body in rows])
                else:
                    self._client.record_built([orjson.loads(body) for _, body in rows])
                self._access.delete([row_id for row_id, _ in rows])
                moved += len(rows)
                self.relayed += len(rows)
                if len(rows) < self._batch:
                    return moved

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread after a last drain (what it cannot move stays in the table)."""
        self._stopping.set()
        self._woken.set()
        if self._thread is None:
            self._access.close()
            return
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        failures = 0
        try:
            while True:
                if failures:  # commits do not cut a backoff short
                    self._stopping.wait(self._backoff(failures))
                else:
                    self._woken.wait(self._poll)
                stopping = self._stopping.is_set()
                if not stopping and self._linger:
                    self._stopping.wait(self._linger)  # gather the commits right behind
                self._woken.clear()
                try:
                    self.drain()
                    failures = 0
                except Exception as exc:  # kept in the table; tried again after a pause
                    failures += 1
                    self.last_error = exc
                    log.warning("indelible outbox relay: %s (attempt %d)", exc, failures)
                if stopping:
                    return
        finally:
            self._access.close()

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._max_backoff, 0.1 * 2 ** min(failures, 16))
        return random.uniform(ceiling / 2, ceiling)
