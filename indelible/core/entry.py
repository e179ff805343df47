"""Entries and leaves: sealing a validated event into leaf bytes, and decoding leaves back.

The leaf is the RFC 8785 JSON of ``{"commitments"?, "event", "prev_hash", "received_at", "seq",
"v": 1}`` (``docs/formats.md``, Entry and leaf). Its keys are ASCII and fixed, so :func:`seal`
writes it by concatenating the members in JCS order around the event's canonical bytes,
which validation has already computed.

Each erasable (personal) value is replaced by ``null`` in the leaf; its commitment is the hex
SHA-256 of a fresh 16-byte salt followed by the value's JCS bytes. Salt and value travel
beside the leaf as :class:`PersonalValue`; :func:`decode` checks and restores the ones still
held, and leaves erased ones ``null``.

Randomness is passed in (``random_bytes``); nothing here reads a clock or a file.
"""

from __future__ import annotations

import hashlib
from binascii import hexlify
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from indelible import errors
from indelible.core.encoding import MAX_SAFE_INTEGER, canonical
from indelible.core.event import (
    Event,
    format_timestamp,
    parse_pointer,
    parse_stored_timestamp,
)

__all__ = [
    "DecodedEntry",
    "GENESIS_PREV_HASH",
    "IndexColumns",
    "LEAF_VERSION",
    "PersonalValue",
    "SALT_BYTES",
    "Sealed",
    "commitment",
    "decode",
    "index_columns",
    "is_canonical",
    "related_refs",
    "restore_personal",
    "same_event",
    "seal",
]

GENESIS_PREV_HASH = bytes(32)
LEAF_VERSION = 1
SALT_BYTES = 16
_LEAF_KEYS = frozenset({"event", "prev_hash", "received_at", "seq", "v"})
_LEAF_KEYS_COMMITTED = _LEAF_KEYS | {"commitments"}
_sha256 = hashlib.sha256


class PersonalValue(NamedTuple):
    """An erasable value kept beside its leaf: ``value`` is its JCS bytes."""

    pointer: str
    salt: bytes
    value: bytes


class IndexColumns(NamedTuple):
    """Lookup hints storage keeps beside a leaf; None where absent or personal."""

    event_id: str | None
    event_type: str | None
    occurred_at_ms: int | None
    received_at_ms: int
    actor_id: str | None
    actor_type: str | None
    target_type: str | None
    target_id: str | None
    action: str | None
    outcome: str | None
    request_id: str | None
    ip: str | None


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed entry: what the store keeps.

    The leaf, its RFC 6962 leaf hash, the personal values to keep beside it, and the index
    columns (``index_columns(event, received_at_ms)``, which storage needs with every leaf).
    """

    leaf: bytes
    leaf_hash: bytes
    personal: tuple[PersonalValue, ...]
    index: IndexColumns


class DecodedEntry(NamedTuple):
    """A leaf read back.

    ``event`` is the event as submitted (with ``personal`` listing the committed pointers),
    except that erased values — those in ``erased`` — are ``null``.
    """

    seq: int
    received_at: str
    prev_hash: bytes
    event: dict[str, Any]
    commitments: dict[str, str]
    erased: tuple[str, ...]


def commitment(salt: bytes, value: bytes) -> str:
    """The hex SHA-256 of ``salt || value``: what a leaf holds for an erasable value."""
    return _sha256(salt + value).hexdigest()


# -- sealing -------------------------------------------------------------------------------


def seal(
    event: Event,
    *,
    seq: int,
    received_at_ms: int,
    prev_hash: bytes,
    random_bytes: Callable[[int], bytes],
) -> Sealed:
    """Build the leaf of ``event`` as entry ``seq`` and hash it."""
    if type(seq) is not int or not 0 <= seq <= MAX_SAFE_INTEGER:
        raise ValueError(f"seq must be an integer in 0..2^53-1, not {seq!r}")
    if len(prev_hash) != 32:
        raise ValueError(f"prev_hash must be 32 bytes, not {len(prev_hash)}")
    if "personal" in event.body:
        values = _personal_values(event, random_bytes)
        head = _commitments_member(values)
        event_bytes = canonical(_with_nulls(event.body, values), event.route)
    else:
        values, head, event_bytes = (), b'{"event":', event.canonical
    received_at = _received_at(received_at_ms)
    tail = b',"prev_hash":"%b","received_at":"%b","seq":%d,"v":1}' % (
        hexlify(prev_hash),
        received_at,
        seq,
    )
    leaf = head + event_bytes + tail
    hasher = _sha256(b"\x00")
    hasher.update(leaf)
    return _new_sealed(leaf, hasher.digest(), values, _event_columns(event, received_at_ms))


_SET_LEAF, _SET_LEAF_HASH, _SET_PERSONAL, _SET_INDEX = (
    Sealed.__dict__[name].__set__ for name in ("leaf", "leaf_hash", "personal", "index")
)


def _new_sealed(
    leaf: bytes, leaf_hash: bytes, personal: tuple[PersonalValue, ...], index: IndexColumns
) -> Sealed:
    """``Sealed(...)`` at half the cost: fills the slots directly, skipping the frozen guard."""
    sealed: Sealed = object.__new__(Sealed)
    _SET_LEAF(sealed, leaf)
    _SET_LEAF_HASH(sealed, leaf_hash)
    _SET_PERSONAL(sealed, personal)
    _SET_INDEX(sealed, index)
    return sealed


_last_received_at = (-1, b"")


def _received_at(ms: int) -> bytes:
    """``format_timestamp(ms)`` as bytes; a batch shares one, so the last one is remembered."""
    global _last_received_at
    last = _last_received_at  # one tuple: read and replaced atomically
    if last[0] != ms:
        last = _last_received_at = (ms, format_timestamp(ms).encode())
    return last[1]


def _personal_values(
    event: Event, random_bytes: Callable[[int], bytes]
) -> tuple[PersonalValue, ...]:
    values = []
    for pointer in event.body["personal"]:
        salt = random_bytes(SALT_BYTES)
        if type(salt) is not bytes or len(salt) != SALT_BYTES:
            raise ValueError(f"random_bytes({SALT_BYTES}) must return {SALT_BYTES} bytes")
        value = _lookup(event.body, _tokens(pointer))
        values.append(PersonalValue(pointer, salt, canonical(value, event.route)))
    return tuple(values)


def _commitments_member(values: tuple[PersonalValue, ...]) -> bytes:
    commitments = {item.pointer: commitment(item.salt, item.value) for item in values}
    if "".join(commitments).isascii():  # ASCII keys: orjson's order is JCS order
        encoded = orjson.dumps(commitments, option=orjson.OPT_SORT_KEYS)
    else:
        encoded = canonical(commitments)
    return b'{"commitments":' + encoded + b',"event":'


def _tokens(pointer: str) -> tuple[str, ...]:
    tokens = parse_pointer(pointer)
    if tokens is None:
        raise ValueError(f"not a JSON Pointer: {pointer!r}")
    return tokens


def _lookup(doc: Any, tokens: Iterable[str]) -> Any:
    """The value ``tokens`` name in ``doc``; LookupError, TypeError or ValueError if none."""
    for token in tokens:
        doc = doc[_index(token)] if type(doc) is list else doc[token]
    return doc


def _index(token: str) -> int:
    """An RFC 6901 array index: digits without a leading zero (so never ``-1`` or ``01``)."""
    if not (token.isascii() and token.isdigit() and (token == "0" or token[0] != "0")):
        raise ValueError(f"not an array index: {token!r}")
    return int(token)


def _with_nulls(body: dict[str, Any], values: Iterable[PersonalValue]) -> dict[str, Any]:
    """A copy of ``body`` without ``personal`` and with each value set to null."""
    copy = _nulled(body, [item.pointer for item in values])
    del copy["personal"]
    return copy


def _nulled(doc: dict[str, Any], pointers: Iterable[str]) -> dict[str, Any]:
    """A copy of ``doc`` with the value at each pointer set to null.

    Only the containers on the pointers' paths are copied; the rest is shared. Raises
    ``LookupError``, ``TypeError`` or ``ValueError`` if a pointer does not resolve.
    """
    copy: dict[str, Any] = _null_paths(doc, [_tokens(pointer) for pointer in pointers])
    return copy


def _null_paths(container: Any, paths: list[tuple[str, ...]]) -> Any:
    """A shallow copy of ``container`` with each path (relative to it) set to null."""
    if type(container) is dict:
        copy: Any = dict(container)
        key: Any = str
    elif type(container) is list:
        copy, key = list(container), _index
    else:
        raise ValueError("a JSON Pointer passes through a value that is not a container")
    deeper: dict[str, list[tuple[str, ...]]] = {}
    for path in paths:
        if len(path) == 1:
            slot = key(path[0])
            _ = copy[slot]  # the value must exist: KeyError or IndexError if not
            copy[slot] = None
        else:
            deeper.setdefault(path[0], []).append(path[1:])
    for token, rest in deeper.items():
        copy[key(token)] = _null_paths(copy[key(token)], rest)
    return copy


def _assign(container: Any, token: str, value: Any) -> None:
    if type(container) is list:
        container[_index(token)] = value
    else:
        container[token] = value


# -- decoding ------------------------------------------------------------------------------


def decode(
    leaf: bytes,
    personal: Iterable[PersonalValue] = (),
    *,
    require_canonical: bool = False,
) -> DecodedEntry:
    """Parse a leaf, check its shape and each supplied personal value against its commitment.

    The event itself is not validated again. With ``require_canonical``, also check that
    ``leaf`` is exactly the canonical JSON of its value (as :func:`is_canonical`, parsing once).
    Raises :class:`~indelible.errors.LeafError`, with ``seq`` when it could be read.
    """
    try:
        obj = orjson.loads(leaf)
    except orjson.JSONDecodeError as exc:
        raise errors.LeafError(f"the leaf is not JSON: {exc}") from None
    seq = obj.get("seq") if type(obj) is dict else None
    if type(seq) is not int or seq < 0:
        raise errors.LeafError("the leaf is not an object with a non-negative integer seq")
    if require_canonical and not _is_canonical_value(obj, leaf):
        raise errors.LeafError("the leaf is not canonical JSON (RFC 8785)", seq=seq)
    keys, event, received_at = obj.keys(), obj.get("event"), obj.get("received_at")
    prev_hash = _hash_bytes(obj.get("prev_hash"))
    if not (
        keys in (_LEAF_KEYS, _LEAF_KEYS_COMMITTED)
        and obj["v"] == LEAF_VERSION
        and type(obj["v"]) is int
        and prev_hash is not None
        and parse_stored_timestamp(received_at) is not None
        and type(event) is dict
        and type(event.get("event_id")) is str
        and "personal" not in event
    ):
        raise errors.LeafError(_shape_problem(obj), seq=seq)
    if "commitments" not in obj:
        return DecodedEntry(seq, received_at, prev_hash, event, {}, ())
    commitments = obj["commitments"]
    _check_commitments(commitments, seq)
    restored = _restore(event, commitments, personal, seq)
    event["personal"] = sorted(commitments)
    erased = tuple(sorted(pointer for pointer in commitments if pointer not in restored))
    return DecodedEntry(seq, received_at, prev_hash, event, commitments, erased)


def restore_personal(
    entry: dict[str, Any], personal: Sequence[PersonalValue] = ()
) -> dict[str, Any]:
    """The event of an already parsed leaf ``entry``, with the supplied personal values put
    back as :func:`decode` puts them (each checked against its commitment and its null
    place; ``personal`` listing the committed pointers), without parsing the leaf again or
    checking the rest of its shape: for readers of entries verified elsewhere. Values not
    supplied stay null. Raises :class:`~indelible.errors.LeafError` as :func:`decode` does.
    """
    event: dict[str, Any] = entry["event"]
    if "commitments" not in entry:
        return event
    seq: Any = entry.get("seq")
    commitments = entry["commitments"]
    _check_commitments(commitments, seq)
    if personal:
        _restore(event, commitments, personal, seq)
    event["personal"] = sorted(commitments)
    return event


def _hash_bytes(value: Any) -> bytes | None:
    """The 32 bytes written as 64 lowercase hex digits in ``value``, or None."""
    try:
        digest = bytes.fromhex(value)
    except (TypeError, ValueError):
        return None
    return digest if len(digest) == 32 and digest.hex() == value else None


def _shape_problem(obj: dict[str, Any]) -> str:
    """What is wrong with a leaf that failed the shape check (the slow, wordy path)."""
    if obj.keys() != _LEAF_KEYS and obj.keys() != _LEAF_KEYS_COMMITTED:
        return f"the leaf has keys {sorted(obj)}"
    if obj["v"] != LEAF_VERSION or type(obj["v"]) is not int:
        return f"unknown leaf version {obj['v']!r}"
    if _hash_bytes(obj["prev_hash"]) is None:
        return "prev_hash is not 64 lowercase hex digits"
    if parse_stored_timestamp(obj["received_at"]) is None:
        return "received_at is not YYYY-MM-DDTHH:MM:SS.mmmZ"
    event = obj["event"]
    if type(event) is not dict or type(event.get("event_id")) is not str:
        return "the leaf's event is not an object with an event_id"
    return "the leaf's event holds personal, which belongs beside the leaf"


def _check_commitments(commitments: Any, seq: int) -> None:
    if type(commitments) is not dict or not commitments:
        raise errors.LeafError("commitments must be a non-empty object", seq=seq)
    for pointer, digest in commitments.items():
        if _hash_bytes(digest) is None:
            raise errors.LeafError(f"the commitment for {pointer} is not a hex hash", seq=seq)


def _restore(
    event: dict[str, Any],
    commitments: dict[str, str],
    personal: Iterable[PersonalValue],
    seq: int,
) -> set[str]:
    """Check every commitment's place is null; put back the supplied values that match."""
    places = {pointer: _null_place(event, pointer, seq) for pointer in commitments}
    restored: set[str] = set()
    for item in personal:
        if item.pointer not in places or item.pointer in restored:
            raise errors.LeafError(f"no (other) commitment for {item.pointer}", seq=seq)
        _check_value(item, commitments[item.pointer], seq)
        container, token = places[item.pointer]
        _assign(container, token, _parse_value(item, seq))
        restored.add(item.pointer)
    return restored


def _null_place(event: dict[str, Any], pointer: str, seq: int) -> tuple[Any, str]:
    """The container and token where ``pointer`` lands; its value must be null."""
    tokens = parse_pointer(pointer)
    try:
        if tokens is None:
            raise ValueError(pointer)
        container = _lookup(event, tokens[:-1])
        if _lookup(container, tokens[-1:]) is not None:
            raise ValueError(pointer)
    except (LookupError, TypeError, ValueError):
        raise errors.LeafError(f"commitment {pointer} does not name a null", seq=seq) from None
    return container, tokens[-1]


def _check_value(item: PersonalValue, expected: str, seq: int) -> None:
    if len(item.salt) != SALT_BYTES:
        raise errors.LeafError(f"the salt for {item.pointer} is not 16 bytes", seq=seq)
    computed = commitment(item.salt, item.value)
    if computed != expected:
        message = f"the value for {item.pointer} does not match its commitment"
        raise errors.LeafError(message, seq=seq, expected=expected, computed=computed)


def _parse_value(item: PersonalValue, seq: int) -> Any:
    try:
        return orjson.loads(item.value)
    except orjson.JSONDecodeError:
        raise errors.LeafError(f"the value for {item.pointer} is not JSON", seq=seq) from None


# -- canonical form ------------------------------------------------------------------------

# orjson prints every float that JCS prints differently with one of these markers: integral
# floats as "1.0", "-0.0" or "1e+16", floats below 1e-5 as "1e-6". A string may hold a
# marker too; one counts only inside a number token, which follows ":", "," or "[".
_FLOAT_MARKERS = (b".0", b"e+", b"e-")
_NUMBER_BYTES = frozenset(b"0123456789.-")
_BEFORE_NUMBER = frozenset(b":,[")
_AFTER_VALUE = (b",", b"]", b"}", b"")
# Deleting every byte below 0xEE leaves the UTF-8 lead bytes of characters >= U+E000, the only
# ones on which JCS (UTF-16) and orjson (code point) key orders can differ.
_BELOW_E000_LEAD = bytes(range(0xEE))
_DIRECT = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def is_canonical(leaf: bytes) -> bool:
    """Whether ``leaf`` is exactly the RFC 8785 JSON of the value it parses to."""
    try:
        obj = orjson.loads(leaf)
    except orjson.JSONDecodeError:
        return False
    return _is_canonical_value(obj, leaf)


def _is_canonical_value(obj: Any, leaf: bytes) -> bool:
    """``canonical(obj) == leaf``, skipping the walk when orjson's bytes provably are JCS."""
    try:
        if orjson.dumps(obj, option=_DIRECT) == leaf and _orjson_is_jcs(leaf):
            return True
        return canonical(obj) == leaf
    except (orjson.JSONEncodeError, ValueError):
        return False


def _orjson_is_jcs(data: bytes) -> bool:
    """Whether orjson's rendering ``data`` of a container holds no float or key hazard."""
    if data[:1] not in (b"{", b"["):
        return False
    if not data.isascii() and data.translate(None, _BELOW_E000_LEAD):
        return False
    for marker in _FLOAT_MARKERS:
        at = data.find(marker)
        while at != -1:
            if marker != b".0" or data[at + 2 : at + 3] in _AFTER_VALUE:
                start = at - 1
                while data[start] in _NUMBER_BYTES:  # stops at data[0], a bracket
                    start -= 1
                if start < at - 1 and data[start] in _BEFORE_NUMBER:
                    return False
            at = data.find(marker, at + 2)
    return True


# -- comparisons and index columns ---------------------------------------------------------


def same_event(event: Event, decoded: DecodedEntry) -> bool:
    """Whether ``event`` resubmits the content of ``decoded`` (idempotent ingest).

    Values erased from ``decoded`` count as matching whatever ``event`` holds there.
    """
    if event.event_id != decoded.event.get("event_id"):
        return False
    expected: dict[str, Any] = event.body
    if decoded.erased:
        try:
            expected = _nulled(expected, decoded.erased)
        except (LookupError, TypeError, ValueError):
            return False
    try:
        return canonical(expected, event.route) == canonical(decoded.event)
    except ValueError:
        return False


def index_columns(source: Event | DecodedEntry, received_at_ms: int | None = None) -> IndexColumns:
    """The index columns of a validated event (give ``received_at_ms``) or of a decoded leaf.

    Raises ``ValueError`` without ``received_at_ms`` for an Event, and LeafError for a leaf
    whose timestamps are not in the stored form.
    """
    if isinstance(source, Event):
        if received_at_ms is None:
            raise ValueError("received_at_ms is required for an Event")
        return _event_columns(source, received_at_ms)
    received = parse_stored_timestamp(source.received_at)
    if received is None:
        raise errors.LeafError("received_at is not in the stored form", seq=source.seq)
    occurred = parse_stored_timestamp(source.event.get("occurred_at"))
    return _columns(source.event, occurred, received, source.commitments)


def _event_columns(event: Event, received_ms: int) -> IndexColumns:
    """``_columns`` for a validated event, whose parts are known to be objects and strings."""
    body = event.body
    get = body.get
    actor, target, context = body["actor"], get("target", _NOTHING), get("context", _NOTHING)
    ip = context.get("ip")
    if ip is not None and "/context/ip" in get("personal", ()):
        ip = None
    return IndexColumns(
        event.event_id,
        body["event_type"],
        event.occurred_at_ms,
        received_ms,
        actor["id"],
        actor["type"],
        target.get("type"),
        target.get("id"),
        body["action"],
        body["outcome"],
        context.get("request_id"),
        ip,
    )


def _columns(
    event: dict[str, Any], occurred_ms: int | None, received_ms: int, personal: Iterable[str]
) -> IndexColumns:
    actor, target, context = event.get("actor"), event.get("target"), event.get("context")
    actor = actor if type(actor) is dict else _NOTHING
    target = target if type(target) is dict else _NOTHING
    context = context if type(context) is dict else _NOTHING
    ip = None if "/context/ip" in personal else context.get("ip")
    return IndexColumns(
        _text(event.get("event_id")),
        _text(event.get("event_type")),
        occurred_ms,
        received_ms,
        _text(actor.get("id")),
        _text(actor.get("type")),
        _text(target.get("type")),
        _text(target.get("id")),
        _text(event.get("action")),
        _text(event.get("outcome")),
        _text(context.get("request_id")),
        _text(ip),
    )


_NOTHING: dict[str, Any] = {}


def related_refs(event: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The sorted, distinct ``(type, id)`` of an event's ``related`` records (lookup hints
    storage keeps so an entity's history finds events that name it only as related)."""
    related = event.get("related")
    if type(related) is not list:
        return ()
    found = {
        (item["type"], item["id"])
        for item in related
        if type(item) is dict and type(item.get("type")) is str and type(item.get("id")) is str
    }
    return tuple(sorted(found))


def _text(value: Any) -> str | None:
    return value if type(value) is str else None
