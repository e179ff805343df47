"""Record changes to Django models as audit events, atomically with the change.

::

    # settings.py: INSTALLED_APPS += ["indelible.sdk.integrations.django_outbox"]  (migrate)
    capture = DjangoCapture(client)
    capture.track(Invoice, fields=["status", "amount", "customer"], masked=["iban"])
    capture.start_relay()                     # in each process that serves requests

The same semantics as the SQLAlchemy integration, through signals:

- ``pre_save`` reads the recorded fields of the row about to be updated from the database
  (one ``SELECT`` by primary key, ``FOR UPDATE`` inside a transaction on databases that have
  it, converted by Django's own field converters), so ``before`` is what the row held,
  whatever the instance had loaded or deferred;
- ``post_save`` compares with what was saved and inserts the event into ``indelible_outbox``
  on the same connection: inside ``transaction.atomic()`` (or with ``ATOMIC_REQUESTS``) the
  change and its event commit together or not at all; ``transaction.on_commit`` then wakes
  the relay;
- with ``before="loaded"``, ``pre_save`` takes the values the instance was loaded (or last
  saved) with instead, remembered by ``post_init``: no ``SELECT`` (only deferred fields are
  read), but a row changed by someone else since, or ``refresh_from_db()``, is not seen;
- ``pre_delete`` / ``post_delete`` do the same for deletes (Django runs a delete and its
  signals in one transaction, always), including each object of ``QuerySet.delete()``.

Not seen, because Django sends no signal for them: ``QuerySet.update()``, ``bulk_create()``,
``bulk_update()``, raw SQL, and rows removed by database-level cascades. Use ``pg-capture``
(``docs/capture.md``) to record those. Outside an atomic block, each ``save()`` commits on its
own and its event is inserted right after, in a second commit: a crash between the two loses
that event (``docs/sdk.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.models import DecimalField, Model
from django.db.models.signals import post_delete, post_init, post_save, pre_delete, pre_save

from indelible.sdk.integrations.changes import (
    Tracked,
    build_change_event,
    changes_for,
    quantizer,
    snake_case,
    target_id,
)
from indelible.sdk.integrations.relay import Relay

__all__ = ["OUTBOX_TABLE", "DjangoCapture"]

OUTBOX_TABLE = "indelible_outbox"
_BEFORE = "_indelible_before"
_LOADED = "_indelible_loaded"


@dataclass(slots=True)
class _Model:
    tracked: Tracked
    attnames: dict[str, str]  # recorded name -> attribute holding the value (``customer_id``)
    stored: dict[str, Callable[[Any], Any]]  # recorded name -> the value as its column keeps it


class _Reader:
    """``SELECT <recorded columns> FROM <table> WHERE pk = %s`` compiled once per database,
    field set and lock mode, with the converters Django applies to the same query."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[Any, ...], tuple[str, list[Any], Any, Any]] = {}

    def read(self, model: type[Any], using: str, pk: Any, attnames: tuple[str, ...]) -> Any:
        connection = connections[using]
        lock = connection.in_atomic_block and connection.features.has_select_for_update
        key = (model, using, attnames, lock)
        compiled = self._compiled.get(key)
        if compiled is None:
            query = model._base_manager.using(using).filter(pk=pk).values_list(*attnames)
            if lock:
                query = query.select_for_update()
            compiler = query.query.get_compiler(using)
            sql, params = compiler.as_sql()
            if len(params) != 1:  # a base manager that filters: no shortcut
                row = query.first()
                return None if row is None else dict(zip(attnames, row, strict=True))
            converters = compiler.get_converters([col for col, _, _ in compiler.select])
            compiled = (sql, list(params), compiler, converters)
            self._compiled[key] = compiled
        sql, _, compiler, converters = compiled
        pk_field = model._meta.pk
        param = pk_field.get_db_prep_value(pk_field.to_python(pk), connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, [param])
            row = cursor.fetchone()
        if row is None:
            return None
        if converters:
            row = next(iter(compiler.apply_converters([row], converters)))
        return dict(zip(attnames, row, strict=True))


class _DjangoOutbox:
    """The relay's access to ``indelible_outbox`` (from its own thread)."""

    def __init__(self, using: str) -> None:
        self._using = using

    def fetch(self, limit: int) -> list[tuple[int, str]]:
        with connections[self._using].cursor() as cursor:
            cursor.execute(f"SELECT id, event FROM {OUTBOX_TABLE} ORDER BY id LIMIT %s", [limit])
            return [(int(row_id), str(body)) for row_id, body in cursor.fetchall()]

    def delete(self, ids: Sequence[int]) -> None:
        marks = ", ".join(["%s"] * len(ids))
        with transaction.atomic(using=self._using), connections[self._using].cursor() as cursor:
            cursor.execute(f"DELETE FROM {OUTBOX_TABLE} WHERE id IN ({marks})", list(ids))

    def close(self) -> None:
        connections[self._using].close()


class DjangoCapture:
    """Records create/update/delete of tracked models (see the module's docstring)."""

    def __init__(
        self, client: Any, *, transactional: bool = True, before: str = "database"
    ) -> None:
        if before not in ("database", "loaded"):
            raise ValueError('before must be "database" or "loaded"')
        self.client = client
        self.transactional = transactional
        self.before = before
        self.relays: dict[str, Relay] = {}
        self._models: dict[type[Any], _Model] = {}
        self._reader = _Reader()

    def track(
        self,
        model: type[Model],
        *,
        fields: Iterable[str] = (),
        masked: Iterable[str] = (),
        target_type: str | None = None,
    ) -> type[Model]:
        """Record ``model``'s creates, updates and deletes: ``fields`` with their values,
        ``masked`` as changed only. Name a foreign key by its field (``customer``): its key
        value is recorded. ``target_type`` defaults to the class name in snake_case."""
        tracked = Tracked.build(
            target_type=target_type or snake_case(model.__name__), fields=fields, masked=masked
        )
        concrete = {field.name: field for field in model._meta.concrete_fields}
        unknown = [name for name in tracked.fields if name not in concrete]
        if unknown:
            raise ValueError(f"{model.__name__} has no concrete fields {unknown}")
        attnames = {name: concrete[name].attname for name in tracked.fields}
        stored = {
            name: quantizer(concrete[name].decimal_places)
            for name in tracked.fields
            if isinstance(concrete[name], DecimalField)
            and concrete[name].decimal_places is not None
        }
        self._models[model] = _Model(tracked, attnames, stored)
        uid = f"indelible-{id(self)}"
        pre_save.connect(self._pre_save, sender=model, dispatch_uid=uid, weak=False)
        post_save.connect(self._post_save, sender=model, dispatch_uid=uid, weak=False)
        pre_delete.connect(self._pre_delete, sender=model, dispatch_uid=uid, weak=False)
        post_delete.connect(self._post_delete, sender=model, dispatch_uid=uid, weak=False)
        if self.before == "loaded":
            post_init.connect(self._post_init, sender=model, dispatch_uid=uid, weak=False)
        return model

    def untrack(self, model: type[Model]) -> None:
        """Stop recording ``model`` (disconnects this capture's signal receivers)."""
        uid = f"indelible-{id(self)}"
        for signal in (pre_save, post_save, pre_delete, post_delete, post_init):
            signal.disconnect(sender=model, dispatch_uid=uid)
        self._models.pop(model, None)

    def start_relay(self, using: str = "default", **options: Any) -> Relay:
        """Start the relay from database ``using``'s ``indelible_outbox`` (options: ``Relay``)."""
        if using in self.relays:
            raise RuntimeError(f"the relay for {using!r} is already started")
        relay = Relay(_DjangoOutbox(using), self.client, **options).start()
        self.relays[using] = relay
        return relay

    def close(self) -> None:
        """Stop the relays after a last drain."""
        for relay in self.relays.values():
            relay.stop()
        self.relays.clear()

    # -- signals --------------------------------------------------------------------------

    def _read(self, instance: Any, using: str, update_fields: Any = None) -> dict[str, Any] | None:
        model = self._models[type(instance)]
        attnames = tuple(model.attnames.values())
        if update_fields is not None:
            wanted = set(update_fields)
            attnames = tuple(attname for name, attname in model.attnames.items() if name in wanted)
        if not attnames:
            return {}
        row = self._reader.read(type(instance), using, instance.pk, attnames)
        if row is None:
            return None
        return {name: row[attname] for name, attname in model.attnames.items() if attname in row}

    def _post_init(self, sender: Any, instance: Any, **_: Any) -> None:
        """``before="loaded"``: remember the recorded values the instance was built with."""
        values = instance.__dict__
        attnames = self._models[type(instance)].attnames.values()
        values[_LOADED] = {attname: values[attname] for attname in attnames if attname in values}

    def _pre_save(
        self, sender: Any, instance: Any, raw: bool, using: str, update_fields: Any, **_: Any
    ) -> None:
        before = None
        loaded = instance.__dict__.get(_LOADED)
        if loaded is not None and not instance._state.adding:
            before = self._loaded(instance, loaded, using, update_fields)
        elif instance.pk is not None and not (
            instance._state.adding and instance._meta.pk.has_default()
        ):
            before = self._read(instance, using, update_fields)
        instance.__dict__[_BEFORE] = before

    def _loaded(
        self, instance: Any, loaded: dict[str, Any], using: str, update_fields: Any
    ) -> dict[str, Any]:
        """The values the instance was loaded (or last saved) with; deferred ones from the row."""
        model = self._models[type(instance)]
        wanted = set(update_fields) if update_fields is not None else None
        before: dict[str, Any] = {}
        missing: list[str] = []
        for name, attname in model.attnames.items():
            if wanted is not None and name not in wanted:
                continue
            if attname in loaded:
                before[name] = loaded[attname]
            else:
                missing.append(name)
        if missing:
            before.update(self._read(instance, using, missing) or {})
        return before

    def _post_save(
        self,
        sender: Any,
        instance: Any,
        created: bool,
        raw: bool,
        using: str,
        update_fields: Any,
        **_: Any,
    ) -> None:
        model = self._models[type(instance)]
        values = instance.__dict__
        before = values.pop(_BEFORE, None)
        after = _values(model, instance, update_fields)
        if self.before == "loaded":  # what the row holds now, for the next save
            loaded = values.setdefault(_LOADED, {})
            for name, attname in model.attnames.items():
                if name in after:
                    loaded[attname] = after[name]
        if created or before is None:
            self._record(model, instance, using, "create", changes_for(model.tracked, None, after))
            return
        changes = changes_for(model.tracked, before, after)
        if changes:
            self._record(model, instance, using, "update", changes)

    def _pre_delete(self, sender: Any, instance: Any, using: str, **_: Any) -> None:
        before = self._read(instance, using)
        instance.__dict__[_BEFORE] = before if before is not None else {}

    def _post_delete(self, sender: Any, instance: Any, using: str, **_: Any) -> None:
        model = self._models[type(instance)]
        before = instance.__dict__.pop(_BEFORE, None) or _values(model, instance, None)
        self._record(model, instance, using, "delete", changes_for(model.tracked, before, None))

    def _record(
        self, model: _Model, instance: Any, using: str, action: str, changes: list[dict[str, Any]]
    ) -> None:
        tracked = model.tracked
        built, encoded = build_change_event(
            self.client,
            tracked.event_type(action),
            target={"type": tracked.target_type, "id": target_id((instance.pk,))},
            action=action,
            changes=changes,
        )
        if not self.transactional:
            transaction.on_commit(lambda: self.client.record_built([built]), using=using)
            return
        with connections[using].cursor() as cursor:
            cursor.execute(f"INSERT INTO {OUTBOX_TABLE} (event) VALUES (%s)", [encoded.decode()])
        relay = self.relays.get(using)
        if relay is not None:
            transaction.on_commit(relay.wake, using=using)


def _values(model: _Model, instance: Any, update_fields: Any) -> dict[str, Any]:
    """What the instance saved: its loaded recorded fields, decimals at their column's scale."""
    wanted = set(update_fields) if update_fields is not None else None
    values = instance.__dict__
    out = {
        name: values[attname]
        for name, attname in model.attnames.items()
        if attname in values and (wanted is None or name in wanted)
    }
    for name, store in model.stored.items():
        if name in out:
            out[name] = store(out[name])
    return out
