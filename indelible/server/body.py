"""Reading request bodies: the media type, and the raw bytes under a hard size limit."""

from __future__ import annotations

from starlette.requests import Request

from indelible.errors import InputError, LimitExceeded, UnsupportedMediaType

__all__ = ["JSON", "NDJSON", "is_ndjson", "read_limited"]

JSON = "application/json"
NDJSON = "application/x-ndjson"


def is_ndjson(content_type: str | None) -> bool:
    """True for NDJSON, False for JSON; ``UnsupportedMediaType`` (415) for anything else.

    A ``charset`` parameter, when given, must be UTF-8 (JSON text is UTF-8, RFC 8259).
    """
    kind, _, parameters = (content_type or "").partition(";")
    kind = kind.strip().lower()
    if kind not in (JSON, NDJSON):
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'!s} is not accepted: "
            f"send {JSON} (an event or an array of events) or {NDJSON}"
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise UnsupportedMediaType(f"charset {value.strip()} is not accepted: send UTF-8")
    return kind == NDJSON


def _too_large(maximum: int, actual: int | None) -> LimitExceeded:
    size = f"{actual} bytes" if actual is not None else f"more than {maximum} bytes"
    return LimitExceeded(
        f"the request body is {size}; the limit is {maximum}",
        limit="max_body_bytes",
        maximum=maximum,
        actual=actual,
    )


async def read_limited(request: Request, maximum: int) -> bytes:
    """The whole body, refusing (413) before reading past ``maximum`` bytes.

    A declared ``Content-Length`` over the limit is refused before the body is read; the
    bytes are counted as they arrive too, for chunked bodies and for lying headers.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InputError(f"Content-Length {declared!r} is not a number")
        if int(declared) > maximum:
            raise _too_large(maximum, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > maximum:
            raise _too_large(maximum, None)
        chunks.append(chunk)
    return b"".join(chunks)
