"""The background sender: moves the outbox to ``POST /v1/events``, at least once.

One daemon thread loops:

1. read the oldest rows of the outbox (at most ``batch_size`` events and about 4 MiB, under
   the service's 1,000 events and 8 MiB); when there are none, move spilled events back in,
   then wait for a commit (or ``poll`` seconds);
2. ``POST`` them as one JSON array of their canonical bytes. Transport failures, 5xx, 429 and
   503 (``Retry-After`` honoured), a 409 ``duplicate_event_id`` and answers that say the client
   is misconfigured (401, 403, 404, 405, 415: logged as errors) are retried with exponential
   backoff and full jitter, for as long as it takes: nothing is dropped because the service is
   away;
3. on 201 with a receipt naming every event sent, delete the rows. A crash before the delete
   sends them again: the same ``event_id`` makes the service answer with the original
   receipt and record nothing twice;
4. an event the service refuses for itself (422 ``invalid_event`` naming its index, a 409
   ``event_id_conflict`` naming its id — sent alone when the id is in the request more than
   once — a 413 or 400 for a request of that one event) is moved
   to the outbox's ``rejected`` table with the answer, logged as an error, and the rest of
   the request is sent again without it: a refused event never blocks the others and is never
   silently dropped.

:func:`judge` holds the decisions and does no I/O.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from indelible.sdk.outbox import Outbox, Row

__all__ = ["Sender", "Verdict", "backoff_delay", "judge"]

log = logging.getLogger("indelible.sdk")

MAX_BATCH = 1000
MAX_REQUEST_BYTES = 4 << 20
_PER_EVENT = frozenset({400, 413})  # a refusal of the request's content: split to the event
_MISCONFIGURED = frozenset({401, 403, 404, 405, 415})
_MAX_REASON = 4000

Receipts = Callable[[list[dict[str, Any]]], None]


@dataclass
class Verdict:
    """What an answer to a request of ``rows`` decides.

    ``retry`` (with why and the ``Retry-After`` seconds, when given) means nothing is decided:
    send the same rows again later. Otherwise ``acked`` rows are done (with ``receipts``),
    ``refused`` rows are rejected for good, and each group of ``resend`` goes out again now.
    """

    acked: list[Row] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[Row, int | None, str, str]] = field(default_factory=list)
    resend: list[list[Row]] = field(default_factory=list)
    retry: str | None = None
    retry_after: float | None = None
    misconfigured: bool = False


def _error(body: bytes) -> dict[str, Any]:
    try:
        error = orjson.loads(body)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return {"message": body[:200].decode("utf-8", "replace")}
    return error if isinstance(error, dict) else {}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        value = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if 0 <= value < 86_400 else None


def _accepted(rows: Sequence[Row], body: bytes) -> Verdict:
    try:
        receipts = orjson.loads(body)["receipts"]
        ids = [receipt["event_id"] for receipt in receipts]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return Verdict(retry="the service answered 201 without readable receipts")
    if ids != [row.event_id for row in rows]:
        return Verdict(retry="the service's receipts do not name the events sent")
    return Verdict(acked=list(rows), receipts=list(receipts))


def _refuse(rows: Sequence[Row], refused: dict[int, str], status: int, code: str) -> Verdict:
    verdict = Verdict(refused=[(rows[i], status, code, why) for i, why in refused.items()])
    rest = [row for i, row in enumerate(rows) if i not in refused]
    if rest:
        verdict.resend.append(rest)
    return verdict


def _by_index(details: Mapping[str, Any], count: int, prefix: str) -> dict[int, str]:
    found: dict[int, list[str]] = {}
    for item in details.get("errors") or []:
        index = item.get("index") if isinstance(item, dict) else None
        if isinstance(index, int) and 0 <= index < count:
            rule = f"{item.get('field') or '/'}: {item.get('message')} ({item.get('rule')})"
            found.setdefault(index, []).append(rule)
    return {i: (prefix + "; ".join(rules))[:_MAX_REASON] for i, rules in found.items()}


def judge(rows: Sequence[Row], status: int, body: bytes, headers: Mapping[str, str]) -> Verdict:
    """Decide what the answer (``status``, ``body``, ``headers``) to a request of ``rows``
    means. Pure: no I/O."""
    if status == 201:
        return _accepted(rows, body)
    error = _error(body)
    code = str(error.get("code", ""))
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    assert isinstance(details, dict)
    what = f"the service answered {status} {code}: {error.get('message', '')}"[:_MAX_REASON]
    if status == 422 and code == "invalid_event":
        refused = _by_index(details, len(rows), f"the service answered 422 {code}: ")
        if refused:
            return _refuse(rows, refused, status, code)
    if status == 409 and code == "event_id_conflict":
        same = [i for i, row in enumerate(rows) if row.event_id == details.get("event_id")]
        if len(same) == 1:
            return _refuse(rows, {same[0]: what}, status, code)
        if same:  # the id is in the request more than once: which one conflicts? one by one
            rest = [row for i, row in enumerate(rows) if i not in same]
            return Verdict(resend=[[rows[i]] for i in same] + ([rest] if rest else []))
    if status in _PER_EVENT or (status == 422 and code in ("invalid_event", "invalid_request")):
        if len(rows) == 1:
            return _refuse(rows, {0: what}, status, code)
        middle = len(rows) // 2
        return Verdict(resend=[list(rows[:middle]), list(rows[middle:])])
    return Verdict(
        retry=what, retry_after=_retry_after(headers), misconfigured=status in _MISCONFIGURED
    )


def backoff_delay(
    attempt: int,
    retry_after: float | None,
    *,
    base: float,
    cap: float,
    rng: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, full jitter over
    its upper half; never less than the service's ``Retry-After``."""
    ceiling = min(cap, base * (2 ** min(attempt - 1, 32)))
    delay = rng(ceiling / 2, ceiling)
    return max(delay, retry_after) if retry_after is not None else delay


class Sender:
    """The daemon thread that delivers an :class:`Outbox`."""

    def __init__(
        self,
        outbox: Outbox,
        http: httpx.Client,
        *,
        batch_size: int = 500,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        base_backoff: float = 0.2,
        max_backoff: float = 30.0,
        poll: float = 5.0,
        on_receipts: Receipts | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self.outbox, self.http = outbox, http
        self.batch_size, self.max_request_bytes = batch_size, max_request_bytes
        self.base_backoff, self.max_backoff, self.poll = base_backoff, max_backoff, poll
        self.on_receipts = on_receipts
        self.sent = self.retries = self.rejected = 0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="indelible-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now (called after each commit)."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the request in flight; what is not acknowledged stays in the outbox."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._round():
                    self._wake.wait(self.poll)
                    self._wake.clear()
            except _Stopped:
                return
            except Exception:  # never let the thread die: the outbox keeps everything
                log.exception("the Indelible sender failed; retrying")
                self._stop.wait(self.max_backoff)

    def _round(self) -> bool:
        """Deliver one batch; False when there was nothing to send."""
        rows = self.outbox.peek(self.batch_size, self.max_request_bytes)
        if not rows and self.outbox.drain_spill():
            rows = self.outbox.peek(self.batch_size, self.max_request_bytes)
        if not rows:
            return False
        groups = [rows]
        while groups:
            group = groups.pop()
            verdict = self._send(group)
            if verdict.acked:
                self.outbox.acknowledge(verdict.acked)
                self.sent += len(verdict.acked)
                if self.on_receipts is not None:
                    self._tell(verdict.receipts)
            if verdict.refused:
                self.outbox.reject(verdict.refused)
                self.rejected += len(verdict.refused)
                for row, _, _, why in verdict.refused:
                    log.error(
                        "Indelible REJECTED event %s (kept in the outbox): %s", row.event_id, why
                    )
            groups.extend(reversed(verdict.resend))
        return True

    def _tell(self, receipts: list[dict[str, Any]]) -> None:
        assert self.on_receipts is not None
        try:
            self.on_receipts(receipts)
        except Exception:
            log.exception("the on_receipts callback failed")

    def _send(self, rows: list[Row]) -> Verdict:
        """POST ``rows`` until the answer decides something; back off otherwise."""
        body = b"[" + b",".join(row.body for row in rows) + b"]"
        attempt = 0
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                answer = self.http.post(
                    "/v1/events", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                verdict = Verdict(retry=f"cannot reach the service: {exc!r}")
            else:
                verdict = judge(rows, answer.status_code, answer.content, answer.headers)
            if verdict.retry is None:
                self.last_error = None
                return verdict
            attempt += 1
            self.retries += 1
            self.last_error = verdict.retry
            delay = backoff_delay(
                attempt, verdict.retry_after, base=self.base_backoff, cap=self.max_backoff
            )
            level = logging.ERROR if verdict.misconfigured else logging.WARNING
            log.log(
                level, "%s; %d events kept, retrying in %.1f s", verdict.retry, len(rows), delay
            )
            if self._stop.wait(delay):
                raise _Stopped


class _Stopped(Exception):
    pass
