"""The app's configuration."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["OutboxConfig"]


class OutboxConfig(AppConfig):  # type: ignore[misc]
    name = "indelible.sdk.integrations.django_outbox"
    label = "indelible_outbox"
    verbose_name = "Indelible outbox"
    default_auto_field = "django.db.models.BigAutoField"
