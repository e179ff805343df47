"""The HTTP service (edge layer): the JSON API over one log's runtime."""

from __future__ import annotations

from indelible.server.app import create_app
from indelible.server.runtime import IngestLimits, Runtime

__all__ = ["IngestLimits", "Runtime", "create_app"]
