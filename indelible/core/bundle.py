"""Evidence bundles: a record's events with everything needed to check them offline.

A bundle is one JSON document (``docs/formats.md``)::

    {"format": "indelible-evidence-bundle/v1",
     "manifest": "<signed note>",          # what was exported, by whom, why, when; file hashes
     "checkpoint": "<signed note>",        # the log's checkpoint every proof is against
     "cosignatures": ["— witness …\\n"],    # C2SP tlog-cosignature lines over that checkpoint
     "timestamps": [{"authority": URL, "token": base64 DER TimeStampResp}],
     "entries": [{"seq": N, "leaf": base64, "proof": [base64 hash, …],
                  "personal": [{"pointer": "/actor/name", "salt": base64, "value": base64}]}]}

The manifest is a signed note by the log's key whose text is the line
``indelible-evidence-bundle/v1`` followed by one line of canonical JSON (RFC 8785) holding the
query, the exporter, the reason, the time, the checkpoint's origin, size and root, the exported
seqs, and the SHA-256 of the checkpoint note, of the entries and of each timestamp token.

:func:`verify_bundle` needs only the log's verification key. Timestamp tokens are checked by
a function passed in (the caller decides which authorities it trusts); cosignatures with the
witness keys passed in. It returns a :class:`BundleReport` or raises a
:class:`~indelible.errors.VerificationError` naming what failed and, for an entry, its seq.
Pure: no files, sockets or clocks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from indelible import errors
from indelible.core import merkle
from indelible.core import note as notes
from indelible.core.checkpoint import Checkpoint, open_checkpoint
from indelible.core.cosignature import CosignatureVerifier, cosigned_by
from indelible.core.encoding import canonical
from indelible.core.entry import PersonalValue, decode
from indelible.core.jsonparse import parse_json

__all__ = [
    "BUNDLE_FORMAT",
    "MAX_BUNDLE_BYTES",
    "BundleEntry",
    "BundleReport",
    "TimestampCheck",
    "build_bundle",
    "verify_bundle",
]

BUNDLE_FORMAT = "indelible-evidence-bundle/v1"
MAX_BUNDLE_BYTES = 1 << 30
"""Largest bundle :func:`verify_bundle` reads (1 GiB)."""

TimestampCheck = Callable[[bytes, bytes], Mapping[str, Any]]
"""Verifies a DER TimeStampResp over a message; returns what it found (e.g. gen_time)."""

_TOP_KEYS = frozenset({"format", "manifest", "checkpoint", "cosignatures", "timestamps", "entries"})


@dataclass(frozen=True)
class BundleEntry:
    """One exported entry: its leaf, personal values, and inclusion proof."""

    seq: int
    leaf: bytes
    proof: tuple[bytes, ...]
    personal: tuple[PersonalValue, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "leaf": notes.b64encode(self.leaf),
            "proof": [notes.b64encode(node) for node in self.proof],
            "personal": [
                {
                    "pointer": p.pointer,
                    "salt": notes.b64encode(p.salt),
                    "value": notes.b64encode(p.value),
                }
                for p in self.personal
            ],
        }


@dataclass(frozen=True)
class BundleReport:
    """What a verified bundle proves."""

    origin: str
    tree_size: int
    root: bytes
    manifest: dict[str, Any]
    events: list[dict[str, Any]]
    timestamps: list[dict[str, Any]] = field(default_factory=list)
    cosigners: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "manifest": self.manifest,
            "entries": len(self.events),
            "timestamps": self.timestamps,
            "cosigners": self.cosigners,
        }


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _entries_digest(entries: Sequence[dict[str, Any]]) -> str:
    return _sha256(canonical(list(entries)))


# ---------------------------------------------------------------------------------------------
# Building


def build_bundle(
    *,
    signer: notes.Signer,
    checkpoint: str,
    cosignatures: Sequence[str],
    timestamps: Sequence[tuple[str, bytes]],
    entries: Sequence[BundleEntry],
    about: Mapping[str, Any],
) -> bytes:
    """The bundle's bytes. ``about`` holds the query, exporter, reason and time (JSON values);
    ``checkpoint`` is the log-signed note every entry's proof is against."""
    cp, _ = open_checkpoint(checkpoint, signer.verifier())
    listed = [entry.to_json() for entry in entries]
    manifest = {
        **about,
        "origin": cp.origin,
        "tree_size": cp.size,
        "root": notes.b64encode(cp.root),
        "seqs": [entry.seq for entry in entries],
        "sha256": {
            "checkpoint": _sha256(checkpoint.encode()),
            "entries": _entries_digest(listed),
            "timestamps": [_sha256(token) for _, token in timestamps],
        },
    }
    text = f"{BUNDLE_FORMAT}\n{canonical(manifest).decode()}\n"
    document = {
        "format": BUNDLE_FORMAT,
        "manifest": notes.sign_note(text, [signer]),
        "checkpoint": checkpoint,
        "cosignatures": list(cosignatures),
        "timestamps": [
            {"authority": url, "token": notes.b64encode(token)} for url, token in timestamps
        ],
        "entries": listed,
    }
    return canonical(document)


# ---------------------------------------------------------------------------------------------
# Verifying


def _fail(message: str, **evidence: Any) -> errors.BundleError:
    return errors.BundleError(message, **evidence)


def _field(obj: Any, name: str, kind: type, where: str) -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise _fail(f"{where}: {name!r} is missing")
    value = obj[name]
    if type(value) is not kind:
        raise _fail(f"{where}: {name!r} must be a {kind.__name__}")
    return value


def _unb64(text: Any, where: str) -> bytes:
    if type(text) is not str:
        raise _fail(f"{where} must be a base64 string")
    try:
        return notes.b64decode(text, where)
    except errors.FormatError as exc:
        raise _fail(exc.message) from None


def _parse(data: bytes) -> dict[str, Any]:
    # 1. One strict JSON object of the known format, with exactly the known members.
    try:
        document = parse_json(data, max_bytes=MAX_BUNDLE_BYTES)
    except errors.InputError as exc:
        raise _fail(f"the bundle is not strict JSON: {exc.message}") from None
    if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
        raise _fail(f"not an evidence bundle (format {BUNDLE_FORMAT!r})")
    if set(document) != _TOP_KEYS:
        raise _fail(f"the bundle's members must be exactly {sorted(_TOP_KEYS)}")
    return document


def _open_manifest(document: dict[str, Any], verifier: notes.Verifier) -> dict[str, Any]:
    # 2. The manifest is signed by the log's key; its text is the format line and one JSON line.
    signed = _field(document, "manifest", str, "bundle")
    try:
        text = notes.open_note(signed, [verifier]).text
    except (errors.SignatureError, errors.InputError) as exc:
        raise _fail(f"the manifest is not signed by this log's key: {exc.message}") from None
    head, _, rest = text.partition("\n")
    if head != BUNDLE_FORMAT or not rest.endswith("\n") or "\n" in rest[:-1]:
        raise _fail("the manifest text is not the format line and one JSON line")
    try:
        manifest = parse_json(rest[:-1].encode(), max_bytes=len(rest))
    except errors.InputError as exc:
        raise _fail(f"the manifest is not JSON: {exc.message}") from None
    if not isinstance(manifest, dict):
        raise _fail("the manifest is not a JSON object")
    return manifest


def _open_bundle_checkpoint(
    document: dict[str, Any], manifest: dict[str, Any], verifier: notes.Verifier
) -> tuple[str, Checkpoint]:
    # 3. The checkpoint is the log's, and the one the manifest was signed over.
    note = _field(document, "checkpoint", str, "bundle")
    try:
        cp, _ = open_checkpoint(note, verifier)
    except (errors.SignatureError, errors.InputError) as exc:
        raise _fail(f"the checkpoint is not this log's checkpoint: {exc.message}") from None
    hashes = _field(manifest, "sha256", dict, "manifest")
    named = (
        _field(manifest, "origin", str, "manifest"),
        _field(manifest, "tree_size", int, "manifest"),
        _field(manifest, "root", str, "manifest"),
    )
    if named != (cp.origin, cp.size, notes.b64encode(cp.root)) or hashes.get(
        "checkpoint"
    ) != _sha256(note.encode()):
        raise _fail(
            "the checkpoint is not the one the manifest names",
            expected=f"{named[0]} size {named[1]} root {named[2]}",
            computed=f"{cp.origin} size {cp.size} root {notes.b64encode(cp.root)}",
        )
    return note, cp


def _personal(items: Any, seq: int) -> tuple[PersonalValue, ...]:
    if type(items) is not list:
        raise _fail("'personal' must be a list", seq=seq)
    values = []
    for item in items:
        pointer = _field(item, "pointer", str, f"seq {seq} personal value")
        salt = _unb64(item.get("salt"), f"seq {seq} personal salt")
        value = _unb64(item.get("value"), f"seq {seq} personal value")
        values.append(PersonalValue(pointer, salt, value))
    return tuple(values)


def _touches(event: dict[str, Any], target: tuple[str, str]) -> bool:
    records = [event.get("target"), *(event.get("related") or [])]
    return any(isinstance(r, dict) and (r.get("type"), r.get("id")) == target for r in records)


def _check_entry(item: Any, cp: Checkpoint, target: tuple[str, str] | None) -> dict[str, Any]:
    # 4. Each entry: its leaf is in the checkpoint's tree at its seq, its personal values match
    #    their commitments, and it is about the record the manifest's query names.
    seq = _field(item, "seq", int, "entry")
    leaf = _unb64(item.get("leaf"), f"seq {seq} leaf")
    proof = item.get("proof")
    if type(proof) is not list:
        raise _fail("'proof' must be a list", seq=seq)
    nodes = [_unb64(node, f"seq {seq} proof hash") for node in proof]
    if not 0 <= seq < cp.size:
        raise _fail(f"the entry is outside the checkpoint's tree of size {cp.size}", seq=seq)
    merkle.verify_inclusion(merkle.leaf_hash(leaf), seq, cp.size, nodes, cp.root)
    decoded = decode(leaf, _personal(item.get("personal", []), seq))
    if decoded.seq != seq:
        raise _fail(f"the leaf says seq {decoded.seq}", seq=seq)
    if target is not None and not _touches(decoded.event, target):
        raise _fail(f"the event is not about {target[0]} {target[1]}", seq=seq)
    return {"seq": seq, "received_at": decoded.received_at, "event": decoded.event}


def _query_target(manifest: dict[str, Any]) -> tuple[str, str] | None:
    query = manifest.get("query")
    if not isinstance(query, dict) or "target_type" not in query:
        return None
    return str(query["target_type"]), str(query.get("target_id"))


def _check_entries(
    document: dict[str, Any], manifest: dict[str, Any], cp: Checkpoint
) -> list[dict[str, Any]]:
    items = _field(document, "entries", list, "bundle")
    seqs = _field(manifest, "seqs", list, "manifest")
    present = [item.get("seq") if isinstance(item, dict) else None for item in items]
    for seq in seqs:
        if seq not in present:
            raise _fail("the entry the manifest lists is missing from the bundle", seq=seq)
    if present != seqs:
        extra = next((s for s in present if s not in seqs), None)
        raise _fail(
            "the bundle's entries are not the ones the manifest lists, in its order",
            seq=extra if type(extra) is int else None,
        )
    target = _query_target(manifest)
    events = [_check_entry(item, cp, target) for item in items]
    if manifest["sha256"].get("entries") != _entries_digest(items):
        raise _fail("the entries differ from those the manifest was signed over")
    return events


def _check_timestamps(
    document: dict[str, Any],
    manifest: dict[str, Any],
    note: str,
    check: TimestampCheck | None,
) -> list[dict[str, Any]]:
    # 5. Each timestamp token is one the manifest names, over the exact checkpoint note.
    items = _field(document, "timestamps", list, "bundle")
    tokens = [_unb64(_field(i, "token", str, "timestamp"), "timestamp token") for i in items]
    if [_sha256(token) for token in tokens] != manifest["sha256"].get("timestamps"):
        raise _fail("the timestamp tokens differ from those the manifest was signed over")
    found = []
    for item, token in zip(items, tokens, strict=True):
        authority = _field(item, "authority", str, "timestamp")
        if check is None:
            found.append({"authority": authority, "checked": False})
            continue
        try:
            info = check(token, note.encode())
        except errors.VerificationError as exc:
            raise errors.TimestampError(f"timestamp by {authority}: {exc.message}") from None
        found.append({"authority": authority, "checked": True, **info})
    return found


def _check_cosignatures(
    document: dict[str, Any],
    cp: Checkpoint,
    note: str,
    witnesses: Sequence[CosignatureVerifier],
    quorum: int,
) -> list[str]:
    # 6. Cosignatures by the given witnesses over this checkpoint; at least ``quorum``.
    lines = _field(document, "cosignatures", list, "bundle")
    body = notes.parse_note(note).text
    if any(type(line) is not str for line in lines):
        raise _fail("'cosignatures' must be a list of strings")
    cosigners = list(cosigned_by(body, lines, witnesses))
    if len(cosigners) < quorum:
        raise errors.SignatureError(
            f"the checkpoint of size {cp.size} is cosigned by {len(cosigners)} of the given "
            f"witnesses, fewer than {quorum}"
        )
    return cosigners


def verify_bundle(
    data: bytes,
    verifier: notes.Verifier,
    *,
    check_timestamp: TimestampCheck | None = None,
    witnesses: Sequence[CosignatureVerifier] = (),
    quorum: int = 0,
) -> BundleReport:
    """Verify an evidence bundle with the log's key; see the module docstring."""
    document = _parse(data)
    manifest = _open_manifest(document, verifier)
    note, cp = _open_bundle_checkpoint(document, manifest, verifier)
    events = _check_entries(document, manifest, cp)
    stamps = _check_timestamps(document, manifest, note, check_timestamp)
    cosigners = _check_cosignatures(document, cp, note, witnesses, quorum)
    return BundleReport(cp.origin, cp.size, cp.root, manifest, events, stamps, cosigners)
