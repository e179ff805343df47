"""Reading a sink's options: types, unknown keys, and secrets from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from indelible.errors import ConfigError

__all__ = ["SinkOptions"]


class SinkOptions:
    """The options of the sink ``name``; every problem is a ``ConfigError`` naming it."""

    def __init__(self, name: str, options: Mapping[str, Any], known: set[str]) -> None:
        self.name, self.options = name, options
        unknown = sorted(set(options) - known)
        if unknown:
            self.fail(f"unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})")

    def fail(self, message: str) -> None:
        raise ConfigError(f"sink {self.name}: {message}", setting="alert_rules")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.options.get(key, default)
        if value is None:
            return None
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            self.fail(f"{key} must be {getattr(kind, '__name__', kind)}")
        return value

    def required(self, key: str, kind: type | tuple[type, ...] = str) -> Any:
        value = self.get(key, kind)
        if value is None or value == "":
            self.fail(f"{key} is required")
        return value

    def secret(self, key: str, environ: Mapping[str, str], *, required: bool) -> str | None:
        """The value of the environment variable named by the option ``key``."""
        variable = self.get(key, str)
        if variable is None:
            if required:
                self.fail(f"{key} is required (the environment variable holding the secret)")
            return None
        value = environ.get(variable)
        if not value:
            self.fail(f"the environment variable {variable} (its {key}) is not set")
        return value
