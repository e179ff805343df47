"""The model every Django subject of the SDK bench changes, one row per commit."""

from __future__ import annotations

from django.db import models


class Invoice(models.Model):
    customer = models.CharField(max_length=40)
    status = models.CharField(max_length=20)
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    notes = models.TextField(default="")

    class Meta:
        app_label = "sdk_django_app"
