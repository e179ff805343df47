"""Capture integrations: record changes to application models as audit events.

:mod:`indelible.sdk.integrations.sqlalchemy` and :mod:`indelible.sdk.integrations.django`
write each recorded change into the application's own database, in the application's own
transaction (the ``indelible_outbox`` table), and a :class:`~indelible.sdk.integrations.relay.Relay`
moves committed rows into the client's durable outbox. ``docs/sdk.md`` ("Capturing model
changes") describes both and what is guaranteed.
"""
