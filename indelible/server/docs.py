"""OpenAPI pieces the routes share: the error shape, and bodies read without a model."""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR_SCHEMA", "EVENTS_BODY", "errors"]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}

_MEANING = {
    400: "Bad input (malformed JSON, bad parameter); nothing was changed",
    401: "No API key, or an unknown or revoked one",
    403: "The key's role does not allow this route",
    404: "Not found in the key's tenant",
    409: "Conflict with what is stored",
    413: "Over a limit (body size, events per request, export size)",
    415: "Unsupported Content-Type",
    422: "Invalid event or request; every failure is listed",
    429: "Too many failed authentications from this address (Retry-After)",
    503: "Not available now: queue full, shutting down, or the store failed (Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for the error statuses a route can answer, in the one error shape."""
    return {
        status: {
            "description": _MEANING[status],
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for status in statuses
    }


_EVENT = {"type": "object", "description": "An audit event (docs/formats.md)"}
EVENTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [_EVENT, {"type": "array", "items": _EVENT}]},
            },
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "One event per line"},
            },
        },
    }
}
