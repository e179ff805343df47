"""Record changes to SQLAlchemy models as audit events, atomically with the change.

::

    capture = SQLAlchemyCapture(client)
    capture.track(Invoice, fields=["status", "amount", "customer_id"], masked=["iban"])
    capture.install(Session)                  # a Session class, sessionmaker or one session
    outbox_table(Base.metadata)               # or create_outbox(engine): indelible_outbox
    capture.start_relay(engine)

Only the models passed to :meth:`SQLAlchemyCapture.track` are recorded, and of them only the
fields named. During each flush, mapper events note what changed: ``after_insert`` (the key
is known by then), ``before_update`` (the value each set attribute replaced, as the session
loaded it) and ``before_delete`` (the row still exists). An attribute set while its old value
was not loaded — expired by a commit or ``session.expire``, deferred, or set on a detached
object — has no old value in the session; for those, the row is read by its key on the
flush's connection before the ``UPDATE``/``DELETE`` runs, so ``before`` is always what the row
held. (SQLAlchemy's ``active_history`` would load it when the attribute is set instead; that
changes the application's behaviour — a set on a detached, expired object raises
``DetachedInstanceError`` — and costs a ``SELECT`` per attribute set rather than one per
flushed row, so it is not used.)

At the end of the flush (``after_flush``) the events are built and, by default, inserted
into the ``indelible_outbox`` table **on the flush's own connection, in the application's
transaction**: the change and its event commit together or not at all. After the commit the
:class:`~indelible.sdk.integrations.relay.Relay` is woken to move them into the client's
durable outbox. With ``transactional=False`` there is no table: the events are handed to
``client.record_built`` after the commit (a crash between the two loses them).

With ``record_failures=True``, a transaction that flushed changes and then rolled back (or
whose flush failed) records each attempted change with ``outcome: "failure"`` directly in the
client's outbox; a savepoint rolled back inside a committed transaction does the same for
the changes made inside it. Bulk statements (``session.execute(update(...))``, Core
statements, raw SQL) bypass the unit of work and are not seen: use ``pg-capture``
(``docs/capture.md``) for those.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    delete,
    event,
    inspect,
    select,
    tuple_,
)
from sqlalchemy.orm import Mapper, Session, SessionTransaction
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NEVER_SET, NO_VALUE
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.sql.elements import ClauseElement

from indelible.sdk.integrations.changes import (
    Tracked,
    build_change_event,
    changes_for,
    quantizer,
    snake_case,
    target_id,
)
from indelible.sdk.integrations.relay import Recorder, Relay

__all__ = ["OUTBOX_TABLE", "SQLAlchemyCapture", "create_outbox", "outbox_table"]

OUTBOX_TABLE = "indelible_outbox"


class _Builder(Recorder, Protocol):
    def build_event(self, event_type: str, **fields: Any) -> dict[str, Any]: ...


def outbox_table(metadata: MetaData | None = None) -> Table:
    """The ``indelible_outbox`` table, in ``metadata`` (for your migrations) or a new one."""
    metadata = metadata if metadata is not None else MetaData()
    existing = metadata.tables.get(OUTBOX_TABLE)
    if existing is not None:
        return existing
    return Table(
        OUTBOX_TABLE,
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("event", Text, nullable=False),
    )


def create_outbox(engine: Engine) -> Table:
    """Create ``indelible_outbox`` in ``engine``'s database if it is not there."""
    table = outbox_table()
    table.create(engine, checkfirst=True)
    return table


@dataclass(slots=True)
class _Model:
    tracked: Tracked
    mapper: Mapper[Any]
    key_attrs: tuple[str, ...]
    stored: dict[str, Callable[[Any], Any]]  # name -> the value as its column keeps it


@dataclass(slots=True)
class _Draft:
    model: _Model
    action: str
    key: tuple[Any, ...] | None
    changes: list[dict[str, Any]]
    connection: Connection | None


@dataclass(slots=True)
class _Pending:
    """One session's recorded work in its current transaction."""

    drafts: list[_Draft] = field(default_factory=list)  # noted in the flush under way
    written: list[tuple[SessionTransaction | None, dict[str, Any]]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    attempt: list[dict[str, Any]] = field(default_factory=list)  # record_failures only


class _EngineOutbox:
    """The relay's access to ``indelible_outbox`` through an Engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine, self._table = engine, outbox_table()

    def fetch(self, limit: int) -> list[tuple[int, str]]:
        table = self._table
        with self._engine.connect() as conn:
            rows = conn.execute(select(table.c.id, table.c.event).order_by(table.c.id).limit(limit))
            return [(int(row_id), str(body)) for row_id, body in rows]

    def delete(self, ids: Sequence[int]) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(self._table).where(self._table.c.id.in_(list(ids))))

    def close(self) -> None:
        pass


class SQLAlchemyCapture:
    """Records create/update/delete of tracked models (see the module's docstring)."""

    def __init__(
        self,
        client: Any,
        *,
        transactional: bool = True,
        record_failures: bool = False,
    ) -> None:
        self.client: _Builder = client
        self.transactional = transactional
        self.record_failures = record_failures
        self.relay: Relay | None = None
        self._models: dict[type[Any], _Model | None] = {}
        self._tracked_classes: list[type[Any]] = []
        self._table = outbox_table()
        self._insert_sql: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- configuration --------------------------------------------------------------------

    def track(
        self,
        model: type[Any],
        *,
        fields: Iterable[str] = (),
        masked: Iterable[str] = (),
        target_type: str | None = None,
    ) -> type[Any]:
        """Record ``model``'s creates, updates and deletes: ``fields`` with their values,
        ``masked`` as changed only. ``target_type`` defaults to the class name in snake_case
        (``LineItem`` → ``line_item``); events are ``<target_type>.created`` and so on."""
        mapper: Mapper[Any] = inspect(model)
        tracked = Tracked.build(
            target_type=target_type or snake_case(model.__name__), fields=fields, masked=masked
        )
        columns = {prop.key for prop in mapper.column_attrs}
        unknown = [name for name in tracked.fields if name not in columns]
        if unknown:
            raise ValueError(f"{model.__name__} has no column attributes {unknown}")
        keys = tuple(mapper.get_property_by_column(col).key for col in mapper.primary_key)
        stored = {}
        for name in tracked.fields:
            kind = mapper.column_attrs[name].columns[0].type
            if isinstance(kind, Numeric) and kind.asdecimal and kind.scale is not None:
                stored[name] = quantizer(kind.scale)
        with self._lock:
            self._models[model] = _Model(tracked, mapper, keys, stored)
            for cls in list(self._models):
                if self._models[cls] is None:
                    del self._models[cls]  # forget cached "not tracked" answers
            first = model not in self._tracked_classes
            self._tracked_classes.append(model) if first else None
        if first:
            event.listen(model, "after_insert", self._after_insert, propagate=True)
            event.listen(model, "before_update", self._before_update, propagate=True)
            event.listen(model, "before_delete", self._before_delete, propagate=True)
        return model

    def install(self, target: Any = Session) -> None:
        """Listen to the sessions of ``target``: the ``Session`` class (every session, the
        default), a ``sessionmaker``, a ``scoped_session`` or one session."""
        event.listen(target, "after_flush", self._after_flush)
        event.listen(target, "after_commit", self._after_commit)
        event.listen(target, "after_soft_rollback", self._after_soft_rollback)
        event.listen(target, "after_transaction_end", self._after_transaction_end)
        if self.record_failures:
            event.listen(target, "before_flush", self._before_flush)

    def start_relay(self, engine: Engine, **options: Any) -> Relay:
        """Start the relay from ``engine``'s ``indelible_outbox`` (options: see ``Relay``)."""
        if self.relay is not None:
            raise RuntimeError("this capture's relay is already started")
        self.relay = Relay(_EngineOutbox(engine), self.client, **options).start()
        return self.relay

    def close(self) -> None:
        """Stop the relay after a last drain."""
        if self.relay is not None:
            self.relay.stop()
            self.relay = None

    # -- mapper events: what changed ------------------------------------------------------

    def _model(self, cls: type[Any]) -> _Model | None:
        try:
            return self._models[cls]
        except KeyError:
            pass
        found = next(
            (self._models[base] for base in cls.__mro__[1:] if self._models.get(base)), None
        )
        with self._lock:
            self._models[cls] = found
        return found

    def _note(self, state: InstanceState[Any], draft: _Draft) -> None:
        session = state.session
        if session is not None:
            _pending(session, self).drafts.append(draft)

    def _after_insert(self, mapper: Mapper[Any], connection: Connection, target: Any) -> None:
        model = self._model(type(target))
        if model is None:
            return
        state: InstanceState[Any] = instance_state(target)
        values = state.dict
        key = tuple(values.get(name) for name in model.key_attrs)
        after = _values(model, values)
        if len(after) < len(model.tracked.fields):
            after.update(_read_row(connection, model, key, _missing(model, after)))
        changes = changes_for(model.tracked, None, after)
        self._note(state, _Draft(model, "create", key, changes, connection))

    def _before_update(self, mapper: Mapper[Any], connection: Connection, target: Any) -> None:
        model = self._model(type(target))
        if model is None:
            return
        state: InstanceState[Any] = instance_state(target)
        draft = _update_draft(model, state, connection)
        if draft is not None:
            self._note(state, draft)

    def _before_delete(self, mapper: Mapper[Any], connection: Connection, target: Any) -> None:
        model = self._model(type(target))
        if model is None:
            return
        state: InstanceState[Any] = instance_state(target)
        key = state.key[1] if state.key is not None else _key_of(model, state.dict)
        before = _values(model, state.dict)
        if len(before) < len(model.tracked.fields):
            before.update(_read_row(connection, model, key, _missing(model, before)))
        changes = changes_for(model.tracked, before, None)
        self._note(state, _Draft(model, "delete", key, changes, connection))

    # -- session events: events, the outbox, commit and rollback --------------------------

    def _build(self, draft: _Draft, outcome: str = "success") -> tuple[dict[str, Any], bytes]:
        tracked = draft.model.tracked
        target = None
        if draft.key is not None and all(part is not None for part in draft.key):
            target = {"type": tracked.target_type, "id": target_id(draft.key)}
        return build_change_event(
            self.client,
            tracked.event_type(draft.action),
            target=target,
            action=draft.action,
            changes=draft.changes,
            outcome=outcome,
        )

    def _after_flush(self, session: Session, flush_context: Any) -> None:
        pending = session.info.get(self)
        if pending is None:
            return
        pending.attempt = []
        if not pending.drafts:
            return
        drafts, pending.drafts = pending.drafts, []
        savepoint = session.get_nested_transaction()
        by_connection: dict[int, tuple[Connection | None, list[bytes]]] = {}
        for draft in drafts:
            built, encoded = self._build(draft)
            pending.written.append((savepoint, built))
            by_connection.setdefault(id(draft.connection), (draft.connection, []))[1].append(
                encoded
            )
        if self.transactional:
            for connection, events in by_connection.values():
                assert connection is not None
                self._insert(connection, events)

    def _insert(self, connection: Connection, events: list[bytes]) -> None:
        """One ``INSERT`` of the events' JSON on the flush's connection (the DBAPI cursor:
        the statement is fixed, and it runs inside the transaction SQLAlchemy began); several
        events of one flush in one ``executemany``."""
        dialect = connection.dialect
        sql = self._insert_sql.get(dialect.paramstyle)
        if sql is None:
            mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
            if mark is None:
                connection.execute(self._table.insert(), [{"event": e.decode()} for e in events])
                return
            sql = f"INSERT INTO {OUTBOX_TABLE} (event) VALUES ({mark})"
            self._insert_sql[dialect.paramstyle] = sql
        cursor = connection.connection.cursor()
        try:
            if len(events) == 1:
                cursor.execute(sql, (events[0].decode(),))
            else:
                cursor.executemany(sql, [(e.decode(),) for e in events])
        finally:
            cursor.close()

    def _after_commit(self, session: Session) -> None:
        pending = session.info.pop(self, None)
        if pending is None:
            return
        if pending.written:
            if self.transactional:
                if self.relay is not None:
                    self.relay.wake()
            else:
                self.client.record_built([built for _, built in pending.written])
        if self.record_failures and pending.failed:
            self.client.record_built(pending.failed)

    def _after_soft_rollback(self, session: Session, previous: SessionTransaction) -> None:
        pending = session.info.get(self)
        if pending is None:
            return
        pending.drafts = []  # noted by a flush that failed: never written
        pending.failed += pending.attempt
        pending.attempt = []
        if not previous.nested:
            return  # the whole transaction: see _after_transaction_end
        kept = []
        for savepoint, built in pending.written:
            if _inside(savepoint, previous):
                pending.failed.append(_failed(built))
            else:
                kept.append((savepoint, built))
        pending.written = kept

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is not None:
            return
        pending = session.info.pop(self, None)  # still there: never committed
        if pending is None or not self.record_failures:
            return
        failed = [*pending.failed, *(_failed(built) for _, built in pending.written)]
        failed += pending.attempt
        if failed:
            self.client.record_built(failed)

    def _before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        """With ``record_failures``: what this flush attempts, in case it fails."""
        attempt: list[dict[str, Any]] = []
        for action, objects in (
            ("create", session.new),
            ("update", session.dirty),
            ("delete", session.deleted),
        ):
            for target in objects:
                model = self._model(type(target))
                if model is not None:
                    draft = self._attempted(session, model, action, instance_state(target))
                    if draft is not None:
                        attempt.append(self._build(draft, "failure")[0])
        _pending(session, self).attempt = attempt

    def _attempted(
        self, session: Session, model: _Model, action: str, state: InstanceState[Any]
    ) -> _Draft | None:
        connection = session.connection(bind_arguments={"mapper": model.mapper})
        if action == "update":
            return _update_draft(model, state, connection)
        key = state.key[1] if state.key is not None else _key_of(model, state.dict)
        values = _values(model, state.dict)
        if action == "create":
            return _Draft(model, action, key, changes_for(model.tracked, None, values), None)
        if len(values) < len(model.tracked.fields):
            values.update(_read_row(connection, model, key, _missing(model, values)))
        return _Draft(model, action, key, changes_for(model.tracked, values, None), None)


def _update_draft(
    model: _Model, state: InstanceState[Any], connection: Connection
) -> _Draft | None:
    """The update about to be written for ``state``, or None when no recorded field changed.

    ``committed_state`` holds, for each attribute set since the last load, the value it
    replaced, or NO_VALUE when that was not loaded (expired, deferred, set while detached):
    those are read from the row, which the UPDATE has not touched yet.
    """
    replaced, values = state.committed_state, state.dict
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    unknown: list[str] = []
    for name in model.tracked.fields:
        if name not in replaced or name not in values:
            continue
        after[name] = values[name]
        old = replaced[name]
        if old is NO_VALUE or old is NEVER_SET:
            unknown.append(name)
        else:
            before[name] = old
    if not after:
        return None
    _stored(model, after)
    key = state.key[1] if state.key is not None else _key_of(model, values)
    if unknown:
        before.update(_read_row(connection, model, key, unknown))
    changes = changes_for(model.tracked, before, after)
    return _Draft(model, "update", key, changes, connection) if changes else None


def _pending(session: Session, capture: SQLAlchemyCapture) -> _Pending:
    pending: _Pending | None = session.info.get(capture)
    if pending is None:
        pending = session.info[capture] = _Pending()
    return pending


def _failed(built: dict[str, Any]) -> dict[str, Any]:
    """The event of a change that was rolled back: the same event, ``outcome: "failure"``
    (its ``event_id`` was never committed anywhere, so it is reused)."""
    return {**built, "outcome": "failure"}


def _inside(savepoint: SessionTransaction | None, rolled_back: SessionTransaction) -> bool:
    while savepoint is not None:
        if savepoint is rolled_back:
            return True
        savepoint = savepoint.parent
    return False


def _values(model: _Model, values: Mapping[str, Any]) -> dict[str, Any]:
    """The tracked values present (loaded, and not a SQL expression awaiting its result),
    decimals at their column's scale."""
    out = {}
    for name in model.tracked.fields:
        if name in values:
            value = values[name]
            if not isinstance(value, ClauseElement):
                out[name] = value
    return _stored(model, out)


def _stored(model: _Model, values: dict[str, Any]) -> dict[str, Any]:
    for name, store in model.stored.items():
        if name in values:
            values[name] = store(values[name])
    return values


def _missing(model: _Model, have: Mapping[str, Any]) -> list[str]:
    return [name for name in model.tracked.fields if name not in have]


def _key_of(model: _Model, values: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(values.get(name) for name in model.key_attrs)


def _read_row(
    connection: Connection, model: _Model, key: Sequence[Any], names: Sequence[str]
) -> dict[str, Any]:
    """``names`` as the row with this key holds them now, on the flush's connection."""
    mapper = model.mapper
    columns = [mapper.attrs[name].columns[0] for name in names]
    keys = [mapper.attrs[name].columns[0] for name in model.key_attrs]
    where = keys[0] == key[0] if len(keys) == 1 else tuple_(*keys) == tuple_(*key)
    row = connection.execute(select(*columns).where(where)).one_or_none()
    if row is None:
        return {}
    return dict(zip(names, row, strict=True))
