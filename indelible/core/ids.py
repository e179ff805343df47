"""Event ids (RFC 9562): UUIDv7 from a time and random bytes passed in, UUIDv8 from content.

Indelible writes events of its own (meta-audit, key and settings changes); their ids are
UUIDv7 so they sort by creation time like the ids clients are asked to send. Events that must
get the same id each time they are derived again (captured database changes, alerts) take a
UUIDv8 of a hash of what identifies them, so a second append is a harmless replay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

__all__ = ["uuid7", "uuid8_sha256"]

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


def uuid8_sha256(material: bytes) -> str:
    """A UUIDv8 in canonical lowercase text: the first 128 bits of SHA-256 over ``material``
    with the version (8) and variant (0b10) bits set."""
    raw = bytearray(hashlib.sha256(material).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
