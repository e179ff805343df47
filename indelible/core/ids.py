"""Event ids: UUIDv7 (RFC 9562), from a time and random bytes passed in.

Indelible writes events of its own (meta-audit, key and settings changes); their ids are
UUIDv7 so they sort by creation time like the ids clients are asked to send.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["uuid7"]

_MAX_MS = (1 << 48) - 1


def uuid7(unix_ms: int, random_bytes: Callable[[int], bytes]) -> str:
    """A UUIDv7 in canonical lowercase text: 48 bits of milliseconds, version 7, 74 random
    bits, variant 0b10."""
    if not 0 <= unix_ms <= _MAX_MS:
        raise ValueError("unix_ms must fit in 48 bits")
    rand = int.from_bytes(random_bytes(10), "big") & ((1 << 74) - 1)
    value = (
        (unix_ms << 80)
        | (0x7 << 76)
        | ((rand >> 62) << 64)
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
