"""UUIDv7 and UUIDv8 ids: layout per RFC 9562, ordering by time, range checks, content ids."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indelible.core.ids import uuid7, uuid8_sha256


@given(st.integers(0, (1 << 48) - 1), st.binary(min_size=10, max_size=10))
def test_a_uuid7_carries_its_time_version_and_variant(ms: int, rand: bytes) -> None:
    text = uuid7(ms, lambda n: rand)
    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == ms


def test_ids_sort_by_time_and_differ_within_one_millisecond() -> None:
    earlier, later = uuid7(1_000, os.urandom), uuid7(1_001, os.urandom)
    assert earlier < later
    assert uuid7(5, os.urandom) != uuid7(5, os.urandom)


@pytest.mark.parametrize("ms", [-1, 1 << 48])
def test_a_time_outside_48_bits_is_refused(ms: int) -> None:
    with pytest.raises(ValueError, match="48 bits"):
        uuid7(ms, os.urandom)


@given(st.binary(max_size=64))
def test_a_uuid8_is_the_hash_of_its_material_with_version_and_variant(material: bytes) -> None:
    text = uuid8_sha256(material)
    parsed = uuid.UUID(text)
    assert str(parsed) == text and text == uuid8_sha256(material)
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
    digest = int.from_bytes(hashlib.sha256(material).digest()[:16], "big")
    version_and_variant = (0xF << 76) | (0b11 << 62)
    assert parsed.int & ~version_and_variant == digest & ~version_and_variant
