"""Entries and leaves: seal and decode round trips, commitments, canonical checks, columns."""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indelible import errors
from indelible.core import entry as entry_module
from indelible.core.encoding import MAX_SAFE_INTEGER, Route, float_route
from indelible.core.entry import (
    GENESIS_PREV_HASH,
    DecodedEntry,
    IndexColumns,
    PersonalValue,
    Sealed,
    commitment,
    decode,
    index_columns,
    is_canonical,
    restore_personal,
    same_event,
    seal,
)
from indelible.core.event import Event, format_timestamp, parse_timestamp, validate_event
from tests.core.test_event import NOW_MS, make_event

RECEIVED_MS = NOW_MS + 1234
PREV = hashlib.sha256(b"the previous leaf").digest()
PERSONAL = ["/actor/name", "/changes/2/after", "/changes/2/before", "/context/ip"]


def counter_bytes() -> Callable[[int], bytes]:
    """Deterministic 'randomness': distinct salts, so tests can see each one."""
    state = {"n": 0}

    def random_bytes(size: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(size, "big")

    return random_bytes


def sealed(raw: dict[str, Any] | None = None, seq: int = 7) -> tuple[Event, Sealed]:
    event = validate_event(raw or make_event(), now_ms=NOW_MS)
    return event, seal(
        event, seq=seq, received_at_ms=RECEIVED_MS, prev_hash=PREV, random_bytes=counter_bytes()
    )


def personal_event() -> dict[str, Any]:
    return make_event(personal=list(PERSONAL))


# -- sealing -------------------------------------------------------------------------------


def test_the_leaf_is_the_jcs_of_the_entry() -> None:
    event, result = sealed()
    expected: dict[str, Any] = {
        "event": event.body,
        "prev_hash": PREV.hex(),
        "received_at": format_timestamp(RECEIVED_MS),
        "seq": 7,
        "v": 1,
    }
    assert result.leaf == rfc8785.dumps(expected)
    assert result.leaf_hash == hashlib.sha256(b"\x00" + result.leaf).digest()
    assert result.personal == ()


def test_genesis_prev_hash_is_64_zeros() -> None:
    event = validate_event(make_event(), now_ms=NOW_MS)
    result = seal(event, seq=0, received_at_ms=0, prev_hash=GENESIS_PREV_HASH, random_bytes=bytes)
    leaf = orjson.loads(result.leaf)
    assert leaf["prev_hash"] == "0" * 64
    assert leaf["seq"] == 0
    assert leaf["received_at"] == "1970-01-01T00:00:00.000Z"


def test_personal_values_become_null_with_salted_commitments() -> None:
    event, result = sealed(personal_event())
    leaf = orjson.loads(result.leaf)
    assert "personal" not in leaf["event"]
    assert leaf["event"]["actor"]["name"] is None
    assert leaf["event"]["changes"][2] == {"field": "email", "before": None, "after": None}
    assert leaf["event"]["context"]["ip"] is None
    assert sorted(leaf["commitments"]) == sorted(PERSONAL)
    assert [item.pointer for item in result.personal] == sorted(PERSONAL)
    for item in result.personal:
        assert len(item.salt) == 16
        assert (
            leaf["commitments"][item.pointer] == hashlib.sha256(item.salt + item.value).hexdigest()
        )
    values = {item.pointer: orjson.loads(item.value) for item in result.personal}
    assert values["/actor/name"] == "Ada Lovelace"
    assert values["/context/ip"] == "203.0.113.7"
    assert result.leaf == rfc8785.dumps(leaf)
    # the event itself is left alone
    assert event.body["actor"]["name"] == "Ada Lovelace"
    assert event.body["changes"][2]["before"] == "a@example.com"


def test_personal_values_inside_arrays_round_trip() -> None:
    raw = make_event(
        data={"emails": ["a@example.com", "b@example.com"], "n": [[1, 2]]},
        personal=["/data/emails/1", "/data/n/0/0", "/changes/2/before"],
    )
    event, result = sealed(raw)
    leaf = orjson.loads(result.leaf)
    assert leaf["event"]["data"] == {"emails": ["a@example.com", None], "n": [[None, 2]]}
    assert decode(result.leaf, result.personal).event == event.body
    assert decode(result.leaf).event["data"]["emails"] == ["a@example.com", None]
    assert event.body["data"]["emails"] == ["a@example.com", "b@example.com"]


def test_each_personal_value_gets_a_fresh_salt() -> None:
    _, result = sealed(personal_event())
    salts = [item.salt for item in result.personal]
    assert len(set(salts)) == len(salts)


def test_personal_values_are_jcs_bytes_even_for_floats_and_objects() -> None:
    raw = make_event(data={"card": {"last4": "4242", "amount": 10.0}}, personal=["/data/card"])
    _, result = sealed(raw)
    (item,) = result.personal
    assert item.value == b'{"amount":10,"last4":"4242"}'


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seq": -1}, "seq"),
        ({"seq": 2**53}, "seq"),
        ({"seq": True}, "seq"),
        ({"prev_hash": b"\x00" * 31}, "prev_hash"),
        ({"random_bytes": lambda n: b"\x00" * (n - 1)}, "random_bytes"),
    ],
)
def test_seal_refuses_impossible_arguments(kwargs: dict[str, Any], message: str) -> None:
    event = validate_event(personal_event(), now_ms=NOW_MS)
    arguments: dict[str, Any] = {
        "seq": 1,
        "received_at_ms": RECEIVED_MS,
        "prev_hash": PREV,
        "random_bytes": counter_bytes(),
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        seal(event, **arguments)


# -- decoding ------------------------------------------------------------------------------


def test_seal_then_decode_gives_the_event_back() -> None:
    event, result = sealed()
    decoded = decode(result.leaf)
    assert decoded == DecodedEntry(
        seq=7,
        received_at=format_timestamp(RECEIVED_MS),
        prev_hash=PREV,
        event=event.body,
        commitments={},
        erased=(),
    )
    assert same_event(event, decoded)
    assert decode(result.leaf, require_canonical=True) == decoded


def test_decode_with_personal_values_restores_them() -> None:
    event, result = sealed(personal_event())
    decoded = decode(result.leaf, result.personal)
    assert decoded.event == event.body
    assert decoded.erased == ()
    assert sorted(decoded.commitments) == sorted(PERSONAL)
    assert same_event(event, decoded)


def test_decode_without_personal_values_leaves_nulls_and_commitments() -> None:
    event, result = sealed(personal_event())
    decoded = decode(result.leaf)
    assert decoded.erased == tuple(sorted(PERSONAL))
    assert decoded.event["actor"]["name"] is None
    assert decoded.event["personal"] == sorted(PERSONAL)
    assert decoded.event["changes"][2]["before"] is None
    assert same_event(event, decoded)  # erased values count as matching


def test_decode_with_some_values_erased() -> None:
    event, result = sealed(personal_event())
    kept = [item for item in result.personal if item.pointer != "/context/ip"]
    decoded = decode(result.leaf, kept)
    assert decoded.erased == ("/context/ip",)
    assert decoded.event["actor"]["name"] == "Ada Lovelace"
    assert decoded.event["context"]["ip"] is None
    assert same_event(event, decoded)


def test_restore_personal_puts_values_back_into_a_parsed_leaf_as_decode_does() -> None:
    _, result = sealed(personal_event())
    kept = [item for item in result.personal if item.pointer != "/context/ip"]
    for values in (result.personal, kept, ()):
        restored = restore_personal(orjson.loads(result.leaf), values)
        assert restored == decode(result.leaf, values).event
    plain, unsealed = sealed()
    assert restore_personal(orjson.loads(unsealed.leaf)) == plain.body
    forged = result.personal[0]._replace(value=b'"Mallory"')
    with pytest.raises(errors.LeafError, match="does not match its commitment") as caught:
        restore_personal(orjson.loads(result.leaf), [forged])
    assert caught.value.seq == 7


def test_a_tampered_value_fails_its_commitment() -> None:
    _, result = sealed(personal_event())
    item = result.personal[0]
    forged = item._replace(value=b'"Mallory"')
    with pytest.raises(errors.LeafError) as caught:
        decode(result.leaf, [forged, *result.personal[1:]])
    assert caught.value.seq == 7
    assert caught.value.expected == orjson.loads(result.leaf)["commitments"][item.pointer]
    assert caught.value.computed == commitment(item.salt, b'"Mallory"')
    with pytest.raises(errors.LeafError):
        decode(result.leaf, [item._replace(salt=bytes(16))])


@pytest.mark.parametrize(
    "change",
    [
        lambda item: item._replace(pointer="/reason"),
        lambda item: item._replace(salt=item.salt[:15]),
        lambda item: item._replace(value=b"not json"),
    ],
)
def test_personal_values_that_do_not_belong_are_refused(
    change: Callable[[PersonalValue], PersonalValue],
) -> None:
    _, result = sealed(personal_event())
    bad = change(result.personal[0])
    if bad.value == b"not json":  # a commitment to bytes that do not parse
        salt = bad.salt
        leaf = result.leaf.replace(
            commitment(salt, result.personal[0].value).encode(),
            commitment(salt, b"not json").encode(),
        )
        with pytest.raises(errors.LeafError, match="not JSON"):
            decode(leaf, [bad])
        return
    with pytest.raises(errors.LeafError):
        decode(result.leaf, [bad])


def test_a_value_supplied_twice_is_refused() -> None:
    _, result = sealed(personal_event())
    with pytest.raises(errors.LeafError):
        decode(result.leaf, [result.personal[0], result.personal[0]])


def leaf_with(base: dict[str, Any] | None = None, **changes: Any) -> bytes:
    _, result = sealed(base or personal_event())
    leaf = orjson.loads(result.leaf)
    for key, value in changes.items():
        if value is None:
            del leaf[key]
        else:
            leaf[key] = value
    return orjson.dumps(leaf, option=orjson.OPT_SORT_KEYS)  # decodable, not always canonical


@pytest.mark.parametrize(
    "leaf",
    [
        b"not json",
        b"[1,2]",
        b'{"seq":-1}',
        b'{"seq":"7"}',
        leaf_with(v=2),
        leaf_with(v=1.5),
        leaf_with(v=True),
        leaf_with(extra=1),
        leaf_with(received_at=None),
        leaf_with(prev_hash="00" * 31),
        leaf_with(prev_hash="AB" * 32),
        leaf_with(prev_hash=" " + "0" * 63),
        leaf_with(received_at="2026-11-23T19:03:44Z"),
        leaf_with(event=[]),
        leaf_with(event={"no": "id"}),
        leaf_with(event={"event_id": "x", "personal": ["/reason"]}),
        leaf_with(commitments={}),
        leaf_with(commitments={"/reason": "zz"}),
        leaf_with(commitments={"/event_id": "00" * 32}),
        leaf_with(commitments={"/nowhere": "00" * 32}),
        leaf_with(commitments={"not a pointer": "00" * 32}),
        leaf_with(commitments={"/changes/-1/before": "00" * 32}),
        leaf_with(commitments={"/changes/02/before": "00" * 32}),
    ],
)
def test_malformed_leaves_raise_leaf_error(leaf: bytes) -> None:
    with pytest.raises(errors.LeafError) as caught:
        decode(leaf)
    assert caught.value.code == "leaf_mismatch"


def test_leaf_errors_carry_the_seq_when_known() -> None:
    with pytest.raises(errors.LeafError) as caught:
        decode(leaf_with(v=2))
    assert caught.value.seq == 7
    assert caught.value.details()["seq"] == 7


def test_every_one_byte_change_is_detected() -> None:
    """Each changed byte breaks decode, the canonical form, a commitment or the hash."""
    event, result = sealed(personal_event())
    original = decode(result.leaf, result.personal)
    for position in range(len(result.leaf)):
        for replacement in {0x20, 0x30, 0x61, result.leaf[position] ^ 0x01}:
            if replacement == result.leaf[position]:
                continue
            changed = bytearray(result.leaf)
            changed[position] = replacement
            tampered = bytes(changed)
            assert hashlib.sha256(b"\x00" + tampered).digest() != result.leaf_hash
            try:
                decoded = decode(tampered, result.personal, require_canonical=True)
            except errors.LeafError:
                continue
            assert decoded != original or not same_event(event, decoded)


# -- canonical form ------------------------------------------------------------------------


def test_sealed_leaves_are_canonical() -> None:
    for raw in [make_event(), personal_event(), make_event(data={"f": 1.0, "\ue000": 1e-7})]:
        _, result = sealed(raw)
        assert is_canonical(result.leaf)


@pytest.mark.parametrize(
    "leaf",
    [
        b'{"b":1,"a":2}',
        b'{"a": 1}',
        b'{"a":1.0}',
        b'{"a":[1e-6]}',
        b'{"a":-0.0}',
        b'{"a":1E+2}',
        b'{"a":"\\u0041"}',
        b'{"a":"\\/"}',
        b'{"\xee\x80\x80":1,"\xf0\x9f\x98\x80":2}',
        b'{"a":9007199254740992}',
        b"1.0",
        b"not json",
        b'{"a":1}\n',
    ],
)
def test_non_canonical_bytes_are_detected(leaf: bytes) -> None:
    assert not is_canonical(leaf)


@pytest.mark.parametrize(
    "leaf",
    [
        b'{"a":1,"b":[0.5,"1.0,",{"c":"e-5"}]}',
        b'{"\xf0\x9f\x98\x80":2,"\xee\x80\x80":1}',
        b'{"a":1e+21,"b":1e-7,"c":100,"d":0.000001}',
        b'{"id":"0190a6e4-7b1c-7d3e-8f00-123456789abc","ip":"10.0.0.1","v":"5.0,"}',
        b"[]",
        b'"text"',
        b"1",
    ],
)
def test_canonical_bytes_are_recognized(leaf: bytes) -> None:
    assert is_canonical(leaf)
    assert leaf == rfc8785.dumps(orjson.loads(leaf))


@settings(max_examples=2000)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_orjson_marks_every_float_it_prints_differently(x: float) -> None:
    """The fast canonical check relies on this property of orjson's float output."""
    for container in ([x], {"k": x}, [1, x, 2], {"a": [x]}):
        rendered = orjson.dumps(container, option=orjson.OPT_SORT_KEYS)
        if float_route(x) is not Route.DIRECT:
            assert not entry_module._orjson_is_jcs(rendered)
        assert is_canonical(rendered) == (rendered == rfc8785.dumps(container))


def test_orjson_marks_integral_and_tiny_floats_across_the_range() -> None:
    samples = [float(2**e) for e in range(-1074, 1024)] + [-(10.0**e) for e in range(-300, 300)]
    samples += [struct.unpack("<d", struct.pack("<q", bits))[0] for bits in range(1, 2000, 7)]
    for x in samples:
        if math.isfinite(x) and float_route(x) is not Route.DIRECT:
            assert not entry_module._orjson_is_jcs(orjson.dumps([x])), x


# -- index columns and idempotency ---------------------------------------------------------


def test_index_columns_from_the_event_and_from_the_leaf_agree() -> None:
    event, result = sealed()
    expected = IndexColumns(
        event_id="0190a6e4-7b1c-7d3e-8f00-123456789abc",
        event_type="invoice.voided",
        occurred_at_ms=parse_timestamp("2026-11-23T19:03:44.123Z"),
        received_at_ms=RECEIVED_MS,
        actor_id="user_42",
        actor_type="user",
        target_type="invoice",
        target_id="inv_0001234",
        action="update",
        outcome="success",
        request_id="req_8f2a",
        ip="203.0.113.7",
    )
    assert index_columns(event, RECEIVED_MS) == expected
    assert index_columns(decode(result.leaf)) == expected
    assert result.index == expected


def test_index_columns_hide_a_personal_ip_and_allow_absent_parts() -> None:
    event, result = sealed(personal_event())
    assert index_columns(event, RECEIVED_MS).ip is None
    assert result.index == index_columns(event, RECEIVED_MS)
    assert index_columns(decode(result.leaf, result.personal)).ip is None
    assert index_columns(decode(result.leaf)) == index_columns(event, RECEIVED_MS)
    bare = make_event(target=None, context=None)
    bare_event, bare_result = sealed(bare)
    columns = index_columns(bare_event, RECEIVED_MS)
    assert (columns.target_id, columns.target_type, columns.request_id, columns.ip) == (None,) * 4
    assert index_columns(decode(bare_result.leaf)) == columns


def test_index_columns_of_an_event_need_received_at() -> None:
    event, _ = sealed()
    with pytest.raises(ValueError):
        index_columns(event)


def test_index_columns_of_a_strange_leaf_are_none_not_a_crash() -> None:
    strange = {"event_id": "x", "actor": "nobody", "occurred_at": 5}
    decoded = decode(leaf_with(make_event(), event=strange))
    columns = index_columns(decoded)
    assert (columns.event_id, columns.actor_id, columns.occurred_at_ms) == ("x", None, None)


def test_same_event_spots_different_content() -> None:
    _, result = sealed(personal_event())
    decoded = decode(result.leaf, result.personal)
    changed = validate_event(make_event(personal=list(PERSONAL), reason="other"), now_ms=NOW_MS)
    assert not same_event(changed, decoded)
    fewer = validate_event(make_event(personal=PERSONAL[:2]), now_ms=NOW_MS)
    assert not same_event(fewer, decoded)
    other_id = validate_event(
        make_event(event_id="0190a6e4-7b1c-7d3e-8f00-000000000000", personal=list(PERSONAL)),
        now_ms=NOW_MS,
    )
    assert not same_event(other_id, decoded)


def test_same_event_treats_erased_values_as_matching_anything() -> None:
    _, result = sealed(personal_event())
    decoded = decode(result.leaf)  # everything erased
    raw = personal_event()
    raw["actor"]["name"] = "Someone Else"
    assert same_event(validate_event(raw, now_ms=NOW_MS), decoded)
    del raw["context"]["ip"]
    raw["personal"] = [p for p in PERSONAL if p != "/context/ip"]
    assert not same_event(validate_event(raw, now_ms=NOW_MS), decoded)


def test_same_event_is_false_when_the_shapes_cannot_be_compared() -> None:
    event, result = sealed(make_event())
    decoded = decode(result.leaf)
    assert not same_event(event, decoded._replace(erased=("not a pointer",)))
    assert not same_event(event, decoded._replace(erased=("/reason/deeper",)))
    assert not same_event(event, decoded._replace(erased=("/data/missing",)))
    odd = decode(leaf_with(make_event(), event={**event.body, "data": {"n": 2**60}}))
    assert not same_event(event, odd)


def test_index_columns_refuse_a_received_at_not_in_stored_form() -> None:
    _, result = sealed()
    with pytest.raises(errors.LeafError):
        index_columns(decode(result.leaf)._replace(received_at="yesterday"))


def test_same_event_compares_as_json_numbers() -> None:
    _, result = sealed(make_event(data={"amount": 10.0}))
    resubmitted = validate_event(make_event(data={"amount": 10}), now_ms=NOW_MS)
    assert same_event(resubmitted, decode(result.leaf))
    not_a_bool = validate_event(make_event(data={"amount": True}), now_ms=NOW_MS)
    assert not same_event(not_a_bool, decode(result.leaf))


# -- random events -------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
tokens = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8)
numbers = st.one_of(
    st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda x: not (x.is_integer() and abs(x) > MAX_SAFE_INTEGER)
    ),
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
)
changes = st.lists(
    st.fixed_dictionaries({"field": ids}, optional={"before": values, "after": values}),
    max_size=3,
)


@st.composite
def random_events(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "event_id": str(draw(st.uuids())),
        "event_type": ".".join(draw(st.lists(tokens, min_size=2, max_size=3))),
        "occurred_at": format_timestamp(draw(st.integers(0, NOW_MS))),
        "actor": draw(
            st.fixed_dictionaries(
                {
                    "id": ids,
                    "type": st.sampled_from(["user", "service", "job", "system", "db_role"]),
                },
                optional={"name": texts},
            )
        ),
        "action": draw(tokens),
        "outcome": draw(st.sampled_from(["success", "failure", "denied"])),
    }
    optional = {
        "target": st.fixed_dictionaries({"type": tokens, "id": ids}),
        "reason": texts,
        "context": st.fixed_dictionaries(
            {},
            optional={
                "ip": st.ip_addresses().map(str),
                "user_agent": texts,
                "request_id": texts,
                "source": tokens,
            },
        ),
        "changes": changes,
        "data": st.dictionaries(texts, values, max_size=4),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            raw[name] = draw(strategy)
    erasable = [
        pointer
        for pointer, present in [
            ("/actor/name", "name" in raw["actor"]),
            ("/reason", "reason" in raw),
            ("/context/ip", "ip" in raw.get("context", {})),
        ]
        if present
    ]
    erasable += [
        f"/changes/{index}/{side}"
        for index, change in enumerate(raw.get("changes", []))
        for side in ("before", "after")
        if side in change
    ]
    erasable += [
        f"/data/{key.replace('~', '~0').replace('/', '~1')}" for key in raw.get("data", {})
    ]
    if erasable:
        raw["personal"] = draw(st.lists(st.sampled_from(erasable), unique=True))
    return raw


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(random_events(), st.integers(0, MAX_SAFE_INTEGER), st.data())
def test_random_events_seal_and_decode_round_trip(
    raw: dict[str, Any], seq: int, data: st.DataObject
) -> None:
    event = validate_event(raw, now_ms=NOW_MS)
    assert event.canonical == rfc8785.dumps(event.body)
    result = seal(
        event, seq=seq, received_at_ms=RECEIVED_MS, prev_hash=PREV, random_bytes=counter_bytes()
    )
    assert result.leaf == rfc8785.dumps(orjson.loads(result.leaf))
    assert is_canonical(result.leaf)
    decoded = decode(result.leaf, result.personal, require_canonical=True)
    assert decoded.event == event.body
    assert rfc8785.dumps(decoded.event) == event.canonical
    assert same_event(event, decoded)
    kept = (
        data.draw(st.lists(st.sampled_from(result.personal), unique=True))
        if result.personal
        else []
    )
    partial = decode(result.leaf, kept)
    assert set(partial.erased) == {item.pointer for item in result.personal} - {
        item.pointer for item in kept
    }
    assert same_event(event, partial)
    assert index_columns(partial) == index_columns(event, RECEIVED_MS) == result.index


def test_related_refs_are_sorted_distinct_and_skip_malformed_items() -> None:
    from indelible.core.entry import related_refs

    event = {
        "related": [
            {"type": "payment", "id": "P-2"},
            {"type": "customer", "id": "C-1"},
            {"type": "payment", "id": "P-2"},
            "not an object",
            {"type": "invoice"},
            {"type": 7, "id": "x"},
        ]
    }
    assert related_refs(event) == (("customer", "C-1"), ("payment", "P-2"))
    assert related_refs({}) == ()
    assert related_refs({"related": "nope"}) == ()
