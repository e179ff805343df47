"""The Indelible Python SDK: record audit events durably, deliver them, check the proofs.

::

    from indelible.sdk import Client, context

    client = Client("http://127.0.0.1:8700", token, outbox="./audit-outbox.sqlite3")
    with context(actor={"id": "u-1", "type": "user"}, request_id="r-1"):
        client.record("invoice.voided", target={"type": "invoice", "id": "INV-1"})

It imports nothing of Indelible but :mod:`indelible.core` (and the error tree), so it
installs with the ``sdk`` extra alone (``pip install 'indelible[sdk]'``). See docs/sdk.md.
"""

from indelible.sdk.client import AsyncClient, Client
from indelible.sdk.context import Context, context, current_context, job
from indelible.sdk.outbox import (
    Outbox,
    OutboxClosed,
    OutboxError,
    OutboxFull,
    OutboxLocked,
    Rejected,
)
from indelible.sdk.proofs import NotYetPublished, Prover

__all__ = [
    "AsyncClient",
    "Client",
    "Context",
    "NotYetPublished",
    "Outbox",
    "OutboxClosed",
    "OutboxError",
    "OutboxFull",
    "OutboxLocked",
    "Prover",
    "Rejected",
    "context",
    "current_context",
    "job",
]
