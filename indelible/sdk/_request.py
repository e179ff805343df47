"""Request fields made safe for an event's ``context``, shared by the ASGI and Django
middleware: a hostile header must never make ``record()`` fail in the application."""

from __future__ import annotations

import ipaddress
import uuid

__all__ = ["clean_ip", "clean_text", "new_request_id"]

MAX_REQUEST_ID = 200
MAX_USER_AGENT = 512


def clean_text(value: str | None, limit: int) -> str | None:
    """At most ``limit`` characters, no NUL and no lone surrogate; None when nothing is left."""
    if not value:
        return None
    text = value[:limit].replace("\x00", "")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text or None


def clean_ip(value: str | None) -> str | None:
    """The address when it is an IPv4 or IPv6 address the event format takes, else None."""
    if not value or "%" in value:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return None
    return value


def new_request_id() -> str:
    return str(uuid.uuid4())
