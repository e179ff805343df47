"""``pg-capture relay``: move the outbox into an Indelible log through ``POST /v1/events``.

One relay runs per database (a session advisory lock; a second one waits). The loop:

1. read up to ``batch`` outbox rows of one generation, oldest statement first, with their
   statement's context;
2. build each row's event (:mod:`.events`) and check it as Indelible will; a row that cannot
   be an event is marked rejected at once;
3. ``POST /v1/events`` in requests of at most ``batch`` events and 4 MiB; transport failures,
   429, 5xx and a 409 ``duplicate_event_id`` are retried with jittered exponential backoff
   (``Retry-After`` honoured) for as long as it takes; 401/403/404 too, logged as errors;
4. on 201 with a receipt for every event, delete the rows (and the statements left without
   rows) in one transaction. A crash before that sends them again: same event_ids, so
   Indelible answers with the original receipts and records nothing twice;
5. an event Indelible refuses for itself (422, an oversized 413, a 409 ``event_id_conflict``)
   is marked rejected with the error text, logged, shown by ``pg-capture status``, and the
   rest of its request is sent again without it: a refused row never blocks the others and is
   never dropped;
6. when a read came back short, wait for a NOTIFY on ``indelible_capture`` (sent by the
   triggers once per statement, on commit) or ``poll`` seconds, whichever is first.

A lost database connection is reopened with backoff. :meth:`Relay.stop` (SIGTERM/SIGINT)
ends the loop after the request in flight; rows not yet acknowledged stay in the outbox.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import psycopg
from psycopg import sql

from indelible.core.event import Event, Limits, validate_event
from indelible.errors import InputError, InvalidEvent, NotFound, UpstreamError
from indelible.service.pgcapture.catalog import CHANNEL, SCHEMA, Generation, load_generations
from indelible.service.pgcapture.events import ChangeRow, Source, build_event

__all__ = ["Relay", "RelayOptions", "RelayStats", "connect", "database_errors"]

log = logging.getLogger("indelible.pgcapture")

RELAY_LOCK = (0x49444C, 1)  # (classid, objid) of the session advisory lock of the relay
MAX_BATCH = 1000
_MAX_REQUEST_BYTES = 4 * 1024 * 1024
_MAX_REJECTION = 4000
_TRIGGER_CHECK_S = 60.0
# Indelible judges clock skew with its own clock; everything else is checked here first.
_LOCAL_LIMITS = Limits(max_future_ms=2**62)
_SESSION = (
    "SET DateStyle = 'ISO, YMD'",
    "SET TimeZone = 'UTC'",
    "SET IntervalStyle = 'iso_8601'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
    "SET client_encoding = 'UTF8'",
)
_PER_EVENT = {413, 400}  # refusals of the request's content: split down to the event


@dataclass(frozen=True)
class RelayOptions:
    dsn: str
    url: str
    token: str
    batch: int = MAX_BATCH
    poll: float = 5.0
    max_backoff: float = 30.0
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= MAX_BATCH:
            raise InputError(f"--batch must be 1 to {MAX_BATCH} (Indelible's max_events)")
        if not 0.05 <= self.poll <= 3600:
            raise InputError("--poll must be 0.05 to 3600 seconds")
        if not 0.1 <= self.max_backoff <= 3600:
            raise InputError("--max-backoff must be 0.1 to 3600 seconds")
        if not self.url.startswith(("http://", "https://")) or len(self.url) > 2000:
            raise InputError("--url must be an http:// or https:// URL of Indelible")
        if not self.token or not self.token.isprintable() or " " in self.token:
            raise InputError("--token must be an Indelible API key (idl_…) that may ingest")


@dataclass
class RelayStats:
    relayed: int = 0
    rejected: int = 0
    requests: int = 0
    retries: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "relayed": self.relayed,
            "rejected": self.rejected,
            "requests": self.requests,
            "retries": self.retries,
        }


class _Stopped(Exception):
    """Raised inside the loop once stop() was called."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(dsn: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection to the application's database; InputError / UpstreamError otherwise."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        message = f"--dsn is not a libpq connection string or URL: {_first_line(exc)}"
        raise InputError(message) from None
    where = f"{info.get('host', 'localhost')}/{info.get('dbname', '')}"
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=10,
            application_name="indelible pg-capture",
        )
    except psycopg.Error as exc:
        raise UpstreamError(
            f"cannot connect to the database {where}: {_first_line(exc)}", url=where
        ) from None


@contextmanager
def database_errors(dsn: str) -> Iterator[None]:
    """Turn a failure of the database into an Indelible error naming it (never the password):
    InputError for a privilege the role lacks, UpstreamError for anything else."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        raise InputError(
            f"{_first_line(exc)} (install as the table's owner or a superuser)"
        ) from None
    except psycopg.Error as exc:
        where = _where(dsn)
        raise UpstreamError(f"the database {where} failed: {_first_line(exc)}", url=where) from None


def _where(dsn: str) -> str:
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "?"
    return f"{info.get('host', 'localhost')}/{info.get('dbname', '')}"


@dataclass
class _Pending:
    """Rows of one generation being relayed, with the outcome of each so far."""

    generation: Generation
    rows: list[ChangeRow]
    acked: list[ChangeRow] = field(default_factory=list)
    rejected: list[tuple[ChangeRow, str]] = field(default_factory=list)


class Relay:
    """The relay loop; see the module docstring. ``run()`` returns when ``stop()`` is called."""

    def __init__(self, options: RelayOptions) -> None:
        self.options = options
        self.stats = RelayStats()
        self._stop = threading.Event()
        self._work: psycopg.Connection[Any] | None = None
        self._listen: psycopg.Connection[Any] | None = None
        self._source: Source | None = None
        self._http = httpx.Client(
            timeout=options.timeout,
            headers={
                "Authorization": f"Bearer {options.token}",
                "Content-Type": "application/json",
                "User-Agent": "indelible-pg-capture",
            },
        )
        self._events_url = options.url.rstrip("/") + "/v1/events"
        self._checked_triggers = float("-inf")
        self._trigger_problems: dict[str, str] = {}

    def stop(self) -> None:
        self._stop.set()

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> RelayStats:
        """Relay until stopped. Fails at once (InputError, UpstreamError, NotFound) when the
        database cannot be reached or has no capture at the start; later failures are retried.
        """
        try:
            self._open()
            load_generations(self._db())  # nothing installed: say so now, not in a loop
            failures = 0
            while not self._stop.is_set():
                try:
                    full = self._cycle()
                    failures = 0
                    if not full:
                        self._wait()
                except (psycopg.Error, NotFound) as exc:
                    failures += 1
                    log.error("database: %s; retrying", _first_line(exc))
                    self._sleep(self._backoff(failures))
                    self._reopen()
        except _Stopped:
            pass
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        self._close_db()
        self._http.close()

    def _db(self) -> psycopg.Connection[Any]:
        assert self._work is not None
        return self._work

    def _open(self) -> None:
        self._work = connect(self.options.dsn)
        for statement in _SESSION:
            self._work.execute(statement)
        self._listen = connect(self.options.dsn)
        self._listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        row = self._work.execute(
            "SELECT system_identifier::text, current_database() FROM pg_control_system()"
        ).fetchone()
        assert row is not None
        self._source = Source(row[0], row[1])
        waited = False
        while not self._locked(self._work):
            if not waited:
                log.warning("another relay holds this database's relay lock; waiting for it")
                waited = True
            self._sleep(self.options.poll)
        log.info(
            "relaying database %s (system %s) to %s",
            self._source.database,
            self._source.system_identifier,
            self.options.url,
        )

    @staticmethod
    def _locked(conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", RELAY_LOCK).fetchone()
        return bool(row and row[0])

    def _reopen(self) -> None:
        self._close_db()
        while True:
            try:
                self._open()
                return
            except (UpstreamError, psycopg.Error) as exc:
                log.error("%s; retrying", _first_line(exc))
                self._close_db()
                self._sleep(self.options.max_backoff)

    def _close_db(self) -> None:
        for conn in (self._work, self._listen):
            if conn is not None:
                with suppress(psycopg.Error):
                    conn.close()
        self._work = self._listen = None

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stopped

    def _backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential from 0.25 s to ``max_backoff``, jittered to 50 to 100 % of it."""
        ceiling = min(self.options.max_backoff, 0.25 * 2 ** min(attempt, 20))
        delay = ceiling * (0.5 + random.random() / 2)
        return float(max(delay, min(retry_after or 0.0, 300.0)))

    def _wait(self) -> None:
        """Until a NOTIFY arrives, ``poll`` seconds pass, or stop() is called."""
        assert self._listen is not None
        deadline = time.monotonic() + self.options.poll
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.is_set():
                raise _Stopped
            for _ in self._listen.notifies(timeout=min(remaining, 0.5), stop_after=1):
                return

    def _cycle(self) -> bool:
        """One pass over every generation; True when some read filled a whole batch."""
        generations = load_generations(self._db())
        self._check_triggers(generations)
        full = False
        for g in generations:
            rows = self._fetch(g)
            if rows:
                self._relay(_Pending(g, rows))
                full = full or len(rows) == self.options.batch
            if self._stop.is_set():
                raise _Stopped
        return full

    # -- the database side ---------------------------------------------------------------

    def _fetch(self, g: Generation) -> list[ChangeRow]:
        slots = [  # the type's output function, as format() calls it; NULL stays NULL
            sql.SQL("CASE WHEN c.{0} IS NULL THEN NULL ELSE format('%%s', c.{0}) END").format(
                sql.Identifier(f"{side}{i}")
            )
            for side in ("b", "a")
            for i in range(1, len(g.columns) + 1)
        ]
        query = sql.SQL(
            "SELECT c.stmt, c.id, s.op, s.txid::text,"
            " floor(extract(epoch FROM s.at) * 1000000)::bigint, s.session_role, s.role_name,"
            " s.application_name, s.actor_id, s.actor_type, s.request_id, s.reason, s.ip, {}"
            " FROM {} c LEFT JOIN {}.statements s ON s.id = c.stmt"
            " WHERE c.rejected_at IS NULL ORDER BY c.stmt, c.id LIMIT %s"
        ).format(sql.SQL(", ").join(slots), g.changes, sql.Identifier(SCHEMA))
        n = len(g.columns)
        return [
            ChangeRow(
                stmt=r[0],
                id=r[1],
                op=r[2] or "",
                txid=int(r[3] or 0),
                at_us=r[4] or 0,
                session_role=r[5] or "",
                role_name=r[6] or "",
                application_name=r[7],
                actor_id=r[8],
                actor_type=r[9],
                request_id=r[10],
                reason=r[11],
                ip=r[12],
                before=tuple(r[13 : 13 + n]),
                after=tuple(r[13 + n : 13 + 2 * n]),
            )
            for r in self._db().execute(query, (self.options.batch,))
        ]

    def _settle(self, pending: _Pending) -> None:
        """Delete what Indelible acknowledged and mark what it refused, in one transaction."""
        g, conn = pending.generation, self._db()
        with conn.transaction():
            if pending.acked:
                conn.execute(
                    sql.SQL(
                        "DELETE FROM {} c USING unnest(%s::bigint[], %s::bigint[]) AS d(stmt, id)"
                        " WHERE c.stmt = d.stmt AND c.id = d.id"
                    ).format(g.changes),
                    ([r.stmt for r in pending.acked], [r.id for r in pending.acked]),
                )
            if pending.rejected:
                conn.execute(
                    sql.SQL(
                        "UPDATE {} c SET rejected_at = now(), rejection = d.reason"
                        " FROM unnest(%s::bigint[], %s::bigint[], %s::text[])"
                        " AS d(stmt, id, reason)"
                        " WHERE c.stmt = d.stmt AND c.id = d.id"
                    ).format(g.changes),
                    (
                        [r.stmt for r, _ in pending.rejected],
                        [r.id for r, _ in pending.rejected],
                        [reason[:_MAX_REJECTION] for _, reason in pending.rejected],
                    ),
                )
            conn.execute(
                sql.SQL(
                    "DELETE FROM {}.statements s WHERE s.id = ANY(%s::bigint[])"
                    " AND NOT EXISTS (SELECT FROM {} c WHERE c.stmt = s.id)"
                ).format(sql.Identifier(SCHEMA), g.changes),
                (sorted({r.stmt for r in pending.acked}),),
            )
        for row, reason in pending.rejected:
            log.error(
                "REJECTED outbox row %s/%s of %s (kept in %s.%s, see `pg-capture status`): %s",
                row.stmt,
                row.id,
                g.table,
                SCHEMA,
                f"changes_{g.capture}_{g.generation}",
                reason,
            )
        self.stats.relayed += len(pending.acked)
        self.stats.rejected += len(pending.rejected)

    def _check_triggers(self, generations: Sequence[Generation]) -> None:
        """Log, loudly and once per change, a captured table whose triggers are gone or off."""
        now = time.monotonic()
        if now - self._checked_triggers < _TRIGGER_CHECK_S:
            return
        self._checked_triggers = now
        for g in generations:
            if not g.current:
                continue
            row = (
                self._db()
                .execute(
                    "SELECT count(*) FILTER (WHERE t.tgenabled <> 'D'), count(t.oid)"
                    " FROM indelible_capture.captures c"
                    " LEFT JOIN pg_trigger t ON t.tgrelid = c.relid"
                    " AND t.tgname LIKE 'indelible\\_capture\\_%%' WHERE c.id = %s",
                    (g.capture,),
                )
                .fetchone()
            )
            enabled, present = row if row else (0, 0)
            problem = "" if enabled == 5 else f"{present} of 5 triggers present, {enabled} enabled"
            if problem != self._trigger_problems.get(g.table, ""):
                if problem:
                    log.error(
                        "capture of %s is BROKEN: %s; changes are not recorded", g.table, problem
                    )
                else:
                    log.info("capture of %s: triggers in place", g.table)
            self._trigger_problems[g.table] = problem

    # -- the Indelible side --------------------------------------------------------------

    def _relay(self, pending: _Pending) -> None:
        assert self._source is not None
        events: list[tuple[ChangeRow, Event]] = []
        now_ms = time.time_ns() // 1_000_000
        for row in pending.rows:
            try:
                if not row.op:
                    raise ValueError("its statement's context is missing from the outbox")
                body = build_event(self._source, pending.generation, row)
                events.append((row, validate_event(body, now_ms=now_ms, limits=_LOCAL_LIMITS)))
            except InvalidEvent as exc:
                pending.rejected.append((row, "not a valid event: " + _field_errors(exc)))
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                pending.rejected.append((row, f"cannot make an event of it: {exc}"))
        for chunk in _chunks(events, self.options.batch):
            refused = self._post([event for _, event in chunk])
            for index, (row, _) in enumerate(chunk):
                if index in refused:
                    pending.rejected.append((row, refused[index]))
                else:
                    pending.acked.append(row)
        self._settle(pending)
        log.info(
            "relayed %d events of %s (%d rejected)",
            len(pending.acked),
            pending.generation.table,
            len(pending.rejected),
        )

    def _post(self, events: list[Event]) -> dict[int, str]:
        """Send ``events`` until Indelible decides; the refused ones by index, with why."""
        answer = self._send(events)
        if answer.status_code == 201:
            return {}
        error = _error(answer)
        code, details = error.get("code", ""), error.get("details") or {}
        what = f"Indelible answered {answer.status_code} {code}: {error.get('message', '')}"
        if answer.status_code == 422 and code == "invalid_event":
            prefix = f"Indelible answered 422 {code}: "
            refused = _refused_by_index(details, len(events), prefix)
            if refused:
                return self._post_rest(events, refused)
        if code == "event_id_conflict":
            ids = [event.event_id for event in events]
            if details.get("event_id") in ids:
                return self._post_rest(events, {ids.index(details["event_id"]): what})
        if len(events) == 1:
            return {0: what}
        middle = len(events) // 2
        left, right = self._post(events[:middle]), self._post(events[middle:])
        return {**left, **{middle + i: reason for i, reason in right.items()}}

    def _post_rest(self, events: list[Event], refused: dict[int, str]) -> dict[int, str]:
        rest = [i for i in range(len(events)) if i not in refused]
        if rest:
            later = self._post([events[i] for i in rest])
            refused.update({rest[j]: reason for j, reason in later.items()})
        return refused

    def _send(self, events: list[Event]) -> httpx.Response:
        """POST until the answer is a 201 or a refusal of the content; back off otherwise."""
        body = b"[" + b",".join(event.canonical for event in events) + b"]"
        attempt = 0
        while True:
            if self._stop.is_set():
                raise _Stopped
            self.stats.requests += 1
            level, retry_after = logging.WARNING, None
            try:
                answer = self._http.post(self._events_url, content=body)
            except httpx.HTTPError as exc:
                problem: str | None = f"cannot reach {self.options.url}: {exc}"
            else:
                problem = _undecided(answer, events)
                if problem is None:
                    return answer
                retry_after = _retry_after(answer)
                if answer.status_code in (401, 403, 404, 405):
                    level = logging.ERROR
            attempt += 1
            self.stats.retries += 1
            delay = self._backoff(attempt, retry_after)
            log.log(level, "%s; %d events kept, retrying in %.1f s", problem, len(events), delay)
            self._sleep(delay)


def _undecided(answer: httpx.Response, events: Sequence[Event]) -> str | None:
    """None if the answer decides the request, else why it must be sent again."""
    status = answer.status_code
    if status == 201:
        try:
            ids = [receipt["event_id"] for receipt in answer.json()["receipts"]]
        except (ValueError, KeyError, TypeError):
            return "Indelible answered 201 without readable receipts"
        if ids != [event.event_id for event in events]:
            return "Indelible's receipts do not name the events sent"
        return None
    error = _error(answer)
    code = error.get("code", "")
    if status in _PER_EVENT or (status == 422 and code == "invalid_event"):
        return None
    if status == 409 and code == "event_id_conflict":
        return None
    return f"Indelible answered {status} {code}: {error.get('message', '')}"


def _error(answer: httpx.Response) -> dict[str, Any]:
    try:
        error = orjson.loads(answer.content)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return {"message": answer.text[:200]}
    return error if isinstance(error, dict) else {}


def _retry_after(answer: httpx.Response) -> float | None:
    try:
        return float(answer.headers.get("retry-after", ""))
    except ValueError:
        return None


def _refused_by_index(details: dict[str, Any], count: int, prefix: str) -> dict[int, str]:
    refused: dict[int, list[str]] = {}
    for item in details.get("errors") or []:
        index = item.get("index") if isinstance(item, dict) else None
        if isinstance(index, int) and 0 <= index < count:
            refused.setdefault(index, []).append(
                f"{item.get('field') or '/'}: {item.get('message')} ({item.get('rule')})"
            )
    return {index: prefix + "; ".join(found) for index, found in refused.items()}


def _field_errors(exc: InvalidEvent) -> str:
    return "; ".join(f"{e.field or '/'}: {e.message} ({e.rule})" for e in exc.errors)


def _chunks(
    events: list[tuple[ChangeRow, Event]], most: int
) -> Iterator[list[tuple[ChangeRow, Event]]]:
    """Requests of at most ``most`` events and about 4 MiB."""
    chunk: list[tuple[ChangeRow, Event]] = []
    size = 0
    for item in events:
        length = len(item[1].canonical) + 1
        if chunk and (len(chunk) >= most or size + length > _MAX_REQUEST_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        yield chunk
