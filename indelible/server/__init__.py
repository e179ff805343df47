"""The HTTP service (edge layer): the JSON API over every tenant's log."""

from __future__ import annotations

from indelible.server.app import create_app
from indelible.server.runtime import Runtime, ServerLimits

__all__ = ["Runtime", "ServerLimits", "create_app"]
