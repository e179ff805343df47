"""``indelible_outbox``: one row per recorded change, until the relay has moved it."""

from __future__ import annotations

from django.db import models

__all__ = ["OutboxRow"]


class OutboxRow(models.Model):  # type: ignore[misc]
    id = models.BigAutoField(primary_key=True)
    event = models.TextField()

    class Meta:
        db_table = "indelible_outbox"
