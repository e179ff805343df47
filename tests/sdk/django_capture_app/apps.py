"""The test app's configuration."""

from __future__ import annotations

from django.apps import AppConfig


class CaptureTestConfig(AppConfig):
    name = "tests.sdk.django_capture_app"
    label = "django_capture_app"
    default_auto_field = "django.db.models.BigAutoField"
