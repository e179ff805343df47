"""The bench app's configuration."""

from __future__ import annotations

from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "bench.sdk_django_app"
    label = "sdk_django_app"
    default_auto_field = "django.db.models.BigAutoField"
