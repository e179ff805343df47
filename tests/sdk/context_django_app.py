"""A Django project in one module, for tests/sdk/test_context_django.py (run in its own
process: Django's settings can be configured once per process). Prints one JSON object
with what the views saw, sync and async. ``python -m tests.sdk.context_django_app DB``."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only",
    ALLOWED_HOSTS=["testserver"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
    ],
    # a file (argv[1]): the async views run in other threads, on other connections
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "indelible.sdk.django_middleware.AuditContextMiddleware",
    ],
    USE_TZ=True,
)
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402
from django.urls import path  # noqa: E402

from indelible.sdk import current_context  # noqa: E402


def _seen() -> dict[str, Any]:
    ctx = current_context()
    return {"actor": ctx.event_actor(), "context": ctx.event_context()}


def sync_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_seen())


async def async_view(request: HttpRequest) -> JsonResponse:
    await asyncio.sleep(0)
    return JsonResponse(_seen())


urlpatterns = [path("sync", sync_view), path("async", async_view)]


def main() -> int:
    call_command("migrate", verbosity=0)
    user = User.objects.create_user("alice", password="x")
    out: dict[str, Any] = {"user_pk": user.pk}
    anonymous = Client(REMOTE_ADDR="192.0.2.10")
    out["anonymous"] = anonymous.get("/sync", HTTP_X_REQUEST_ID="req-1").json()
    logged_in = Client(REMOTE_ADDR="192.0.2.11", HTTP_USER_AGENT="agent/1")
    logged_in.force_login(user)
    out["sync"] = logged_in.get("/sync").json()
    out["session_key"] = logged_in.session.session_key

    async def run_async() -> Any:
        client = AsyncClient()  # over ASGI: the address is the scope's client, 127.0.0.1
        await client.aforce_login(user)
        answer = await client.get("/async", headers={"X-Request-Id": "r" * 999})
        return answer.json()

    out["async"] = asyncio.run(run_async())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
