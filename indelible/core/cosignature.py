"""C2SP tlog-cosignature (Ed25519 ``cosignature/v1``) and the tlog-witness request body.

A cosignature is a witness's signed-note signature over a checkpoint: the statement that, as of
``timestamp``, this is the largest consistent tree it has seen for the log. Its signature line
is::

    — <cosigner name> base64(key hash (4) ‖ timestamp (8, big-endian u64) ‖ Ed25519 sig (64))

- key hash: SHA-256(name ‖ 0x0A ‖ 0x04 ‖ 32-byte public key)[:4] (signature type 0x04);
- signed message: ``"cosignature/v1\\ntime <decimal seconds>\\n"`` followed by the whole
  checkpoint body (the note text, extension lines included, final newline included);
- vkey: ``<name>+<8 hex key hash>+<base64(0x04 ‖ public key)>``; the witness's private key
  is written ``PRIVATE+KEY+<name>+<8 hex key hash>+<base64(0x04 ‖ 32-byte seed)>``, which
  transparency-dev/formats' ``NewSignerForCosignatureV1`` reads too.

The name is not signed, so one public key must never serve two cosigner names:
:func:`cosigned_by` counts distinct public keys, not names.

The tlog-witness ``add-checkpoint`` request body is ``old <size>\\n``, up to 63 base64
consistency-proof hashes one per line, an empty line, then the signed checkpoint note
(:func:`format_add_checkpoint` / :func:`parse_add_checkpoint`, exact inverses).

Parsing is strict (canonical base64, no leading zeros) and raises :class:`FormatError`;
verification raises :class:`SignatureError`. Pure: time is passed in, keys are passed in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from indelible import errors
from indelible.core import note as notes
from indelible.core.checkpoint import MAX_TREE_SIZE, parse_checkpoint

__all__ = [
    "COSIGNATURE_V1",
    "MAX_ADD_CHECKPOINT_BYTES",
    "MAX_PROOF_LINES",
    "MAX_TIMESTAMP",
    "AddCheckpoint",
    "Cosignature",
    "CosignatureSigner",
    "CosignatureVerifier",
    "cosign",
    "cosignature_message",
    "cosigned_by",
    "cosigner_key_hash",
    "format_add_checkpoint",
    "format_cosignature",
    "format_cosigner_skey",
    "format_cosigner_vkey",
    "generate_cosigner",
    "parse_add_checkpoint",
    "parse_cosignature",
    "parse_cosigner_skey",
    "parse_cosigner_vkey",
    "verify_cosignature",
]

COSIGNATURE_V1 = 0x04
"""Signature type of Ed25519 cosignature/v1 keys (tlog-cosignature §Format)."""

MAX_TIMESTAMP = (1 << 63) - 1
"""A cosignature timestamp MUST NOT exceed 2^63 - 1 (tlog-cosignature §Format)."""

MAX_PROOF_LINES = 63
"""tlog-witness: the client MUST NOT send more than 63 consistency proof lines."""

MAX_ADD_CHECKPOINT_BYTES = 1 << 20
"""Largest add-checkpoint request body accepted or written (the note's own limit)."""

_HEADER = "cosignature/v1\n"
_KEY_HASH_SIZE = 4
_TIMESTAMP_SIZE = 8
_ED25519_SIZE = 32
_SIGNATURE_SIZE = 64
_PAYLOAD_SIZE = _KEY_HASH_SIZE + _TIMESTAMP_SIZE + _SIGNATURE_SIZE
_HASH_SIZE = 32
_SIG_PREFIX = "\u2014 "  # em dash, space
_SKEY_PREFIX = "PRIVATE+KEY+"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


# ---------------------------------------------------------------------------------------------
# Keys


def cosigner_key_hash(name: str, public_key: bytes) -> bytes:
    """tlog-cosignature §Format: SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]."""
    data = name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_V1]) + public_key
    return hashlib.sha256(data).digest()[:_KEY_HASH_SIZE]


def _check_key(name: str, key_hash: bytes, public_key: bytes) -> None:
    notes.check_key_name(name)
    if key_hash != cosigner_key_hash(name, public_key):
        raise errors.FormatError(f"key hash does not match cosigner key {name!r}")


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's Ed25519 cosignature/v1 public key under its name."""

    name: str
    key_hash: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        if len(self.public_key) != _ED25519_SIZE:
            raise errors.FormatError("an Ed25519 public key is 32 bytes")
        _check_key(self.name, self.key_hash, self.public_key)

    @property
    def key_id(self) -> str:
        """``<name>+<8 hex key hash>``: what the signature lines of this key start with."""
        return f"{self.name}+{self.key_hash.hex()}"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Return ``None`` if ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError) as exc:
            raise errors.SignatureError(f"invalid cosignature by {self.key_id}") from exc


@dataclass(frozen=True)
class CosignatureSigner:
    """A witness's Ed25519 cosigning key. ``seed`` is the 32-byte private seed (RFC 8032)."""

    name: str
    key_hash: bytes
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != _ED25519_SIZE:
            raise errors.FormatError("an Ed25519 seed is 32 bytes")
        _check_key(self.name, self.key_hash, notes.ed25519_public_key(self.seed))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)

    def verifier(self) -> CosignatureVerifier:
        """The matching public key."""
        return CosignatureVerifier(self.name, self.key_hash, notes.ed25519_public_key(self.seed))


def generate_cosigner(name: str, seed: bytes) -> CosignatureSigner:
    """A cosigner for ``name`` from 32 random bytes the caller supplies."""
    notes.check_key_name(name)
    if len(seed) != _ED25519_SIZE:
        raise errors.FormatError("an Ed25519 seed is 32 bytes")
    return CosignatureSigner(name, cosigner_key_hash(name, notes.ed25519_public_key(seed)), seed)


def _split_key(text: str, what: str) -> tuple[str, bytes, bytes]:
    """``<name>+<hex hash>+<base64(0x04 ‖ key)>`` → name, key hash, 32-byte key."""
    return notes.split_key(text, what, COSIGNATURE_V1, "an Ed25519 cosignature/v1 key")


def parse_cosigner_vkey(text: str) -> CosignatureVerifier:
    """Parse ``<name>+<hex key hash>+<base64(0x04 ‖ public key)>``.

    Plain Ed25519 note keys (type 0x01) are refused: they verify log signatures, not
    cosignatures, and the key hash differs.
    """
    name, key_hash, public_key = _split_key(text, "cosigner vkey")
    if key_hash != cosigner_key_hash(name, public_key):
        raise errors.FormatError("cosigner vkey: key hash does not match the name and key")
    return CosignatureVerifier(name, key_hash, public_key)


def format_cosigner_vkey(verifier: CosignatureVerifier) -> str:
    """The vkey text of ``verifier`` (what a witness publishes)."""
    key = notes.b64encode(bytes([COSIGNATURE_V1]) + verifier.public_key)
    return f"{verifier.key_id}+{key}"


def parse_cosigner_skey(text: str) -> CosignatureSigner:
    """Parse ``PRIVATE+KEY+<name>+<hex key hash>+<base64(0x04 ‖ seed)>``.

    Error messages never include the key text.
    """
    if not text.startswith(_SKEY_PREFIX):
        raise errors.FormatError("cosigner skey: must start with PRIVATE+KEY+")
    name, key_hash, seed = _split_key(text[len(_SKEY_PREFIX) :], "cosigner skey")
    if key_hash != cosigner_key_hash(name, notes.ed25519_public_key(seed)):
        raise errors.FormatError("cosigner skey: key hash does not match the name and key")
    return CosignatureSigner(name, key_hash, seed)


def format_cosigner_skey(signer: CosignatureSigner) -> str:
    """The private key text of ``signer``. It is a secret: never log it."""
    key = notes.b64encode(bytes([COSIGNATURE_V1]) + signer.seed)
    return f"{_SKEY_PREFIX}{signer.name}+{signer.key_hash.hex()}+{key}"


# ---------------------------------------------------------------------------------------------
# Cosignatures


@dataclass(frozen=True)
class Cosignature:
    """One parsed cosignature/v1 signature line (not verified)."""

    name: str
    key_hash: bytes
    timestamp: int
    signature: bytes

    @property
    def key_id(self) -> str:
        return f"{self.name}+{self.key_hash.hex()}"


def _check_timestamp(time_s: int) -> None:
    if isinstance(time_s, bool) or not 0 <= time_s <= MAX_TIMESTAMP:
        raise errors.FormatError(f"cosignature timestamp must be from 0 to 2^63 - 1: {time_s!r}")


def cosignature_message(body: str, time_s: int) -> bytes:
    """tlog-cosignature §Ed25519 signed message: header, time line, whole checkpoint body.

    ``body`` must be a checkpoint (origin, size, root and any extension lines).
    """
    _check_timestamp(time_s)
    parse_checkpoint(body)
    return f"{_HEADER}time {time_s}\n{body}".encode()


def format_cosignature(cosig: Cosignature) -> str:
    """The signature line ``— <name> <base64(key hash ‖ timestamp ‖ signature)>\\n``."""
    notes.check_key_name(cosig.name)
    _check_timestamp(cosig.timestamp)
    if len(cosig.key_hash) != _KEY_HASH_SIZE or len(cosig.signature) != _SIGNATURE_SIZE:
        raise errors.FormatError("a cosignature has a 4-byte key hash and a 64-byte signature")
    raw = cosig.key_hash + cosig.timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + cosig.signature
    return f"{_SIG_PREFIX}{cosig.name} {notes.b64encode(raw)}\n"


def parse_cosignature(line: str) -> Cosignature:
    """Parse one signature line (ending in a newline) as an Ed25519 cosignature/v1."""
    # signed-note §Signatures: '— <key name> <base64(key hash ‖ signature)>' and a newline.
    if not line.startswith(_SIG_PREFIX) or not line.endswith("\n"):
        raise errors.FormatError("a cosignature line starts with an em dash and ends in newline")
    name, space, payload = line[len(_SIG_PREFIX) : -1].partition(" ")
    if not space:
        raise errors.FormatError("a cosignature line is '— <key name> <signature>'")
    notes.check_key_name(name)
    raw = notes.b64decode(payload, f"cosignature of {name!r}")
    # tlog-cosignature §Format: key hash ‖ timestamped_signature { u64 timestamp; sig[64] }.
    if len(raw) != _PAYLOAD_SIZE:
        raise errors.FormatError(
            f"cosignature of {name!r} is {len(raw)} bytes, not {_PAYLOAD_SIZE} "
            "(an Ed25519 cosignature/v1)"
        )
    timestamp = int.from_bytes(raw[_KEY_HASH_SIZE : _KEY_HASH_SIZE + _TIMESTAMP_SIZE], "big")
    _check_timestamp(timestamp)
    return Cosignature(name, raw[:_KEY_HASH_SIZE], timestamp, raw[-_SIGNATURE_SIZE:])


def cosign(body: str, signer: CosignatureSigner, time_s: int) -> str:
    """The cosignature line by ``signer`` over the checkpoint ``body`` at ``time_s``."""
    signature = signer.sign(cosignature_message(body, time_s))
    return format_cosignature(Cosignature(signer.name, signer.key_hash, time_s, signature))


def verify_cosignature(
    body: str, line: str, verifier: CosignatureVerifier, *, not_after: int | None = None
) -> int:
    """Check that ``line`` is ``verifier``'s cosignature of the checkpoint ``body``.

    Returns the cosignature's timestamp. Raises :class:`FormatError` for a malformed line or
    body, :class:`SignatureError` for another key's line, a bad signature, or (with
    ``not_after``) a timestamp later than ``not_after`` seconds.
    """
    # 1. Parse the line: name, key hash, timestamp, signature.
    cosig = parse_cosignature(line)
    # 2. Clients ignore lines that do not match the name and key hash they are configured with.
    if (cosig.name, cosig.key_hash) != (verifier.name, verifier.key_hash):
        raise errors.SignatureError(
            "the cosignature is by another key", expected=verifier.key_id, computed=cosig.key_id
        )
    # 3. The message is the cosignature/v1 header, the time line and the checkpoint body.
    verifier.verify(cosignature_message(body, cosig.timestamp), cosig.signature)
    # 4. Verifiers MAY reject cosignatures with timestamps in the future.
    if not_after is not None and cosig.timestamp > not_after:
        raise errors.SignatureError(
            f"the cosignature by {verifier.key_id} is dated in the future",
            expected=f"<= {not_after}",
            computed=str(cosig.timestamp),
        )
    return cosig.timestamp


def cosigned_by(
    body: str, lines: Iterable[str], verifiers: Sequence[CosignatureVerifier]
) -> dict[str, int]:
    """The witnesses among ``verifiers`` with a valid cosignature of ``body`` in ``lines``.

    Returns ``{key_id: timestamp}``, one entry per distinct public key: lines by unknown keys,
    malformed lines and invalid signatures are ignored, and a key configured under two names
    counts once (the name is not signed, so a copied signature would verify under both).
    """
    parse_checkpoint(body)
    by_id = {v.key_id: v for v in verifiers}
    found: dict[bytes, tuple[str, int]] = {}
    for line in lines:
        try:
            verifier = by_id.get(parse_cosignature(line).key_id)
            if verifier is None or verifier.public_key in found:
                continue
            found[verifier.public_key] = (verifier.key_id, verify_cosignature(body, line, verifier))
        except (errors.FormatError, errors.SignatureError):
            continue
    return dict(found.values())


# ---------------------------------------------------------------------------------------------
# tlog-witness add-checkpoint request body


class AddCheckpoint(NamedTuple):
    """An add-checkpoint request: the old size, the consistency proof and the signed note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str


def _check_request(old_size: int, proof: Sequence[bytes]) -> None:
    if isinstance(old_size, bool) or not 0 <= old_size <= MAX_TREE_SIZE:
        raise errors.FormatError(f"add-checkpoint: old size must be 0 to 2^63 - 1: {old_size!r}")
    if len(proof) > MAX_PROOF_LINES:
        raise errors.FormatError(
            f"add-checkpoint: {len(proof)} consistency proof lines, at most {MAX_PROOF_LINES}"
        )
    for i, element in enumerate(proof):
        if len(element) != _HASH_SIZE:
            raise errors.FormatError(f"add-checkpoint: proof hash {i} is not 32 bytes")


def _check_length(length: int) -> None:
    if length > MAX_ADD_CHECKPOINT_BYTES:
        raise errors.LimitExceeded(
            f"add-checkpoint body is larger than {MAX_ADD_CHECKPOINT_BYTES} bytes",
            limit="add_checkpoint_bytes",
            maximum=MAX_ADD_CHECKPOINT_BYTES,
            actual=length,
        )


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The request body: ``old N``, one base64 hash per line, an empty line, the note."""
    _check_request(old_size, proof)
    notes.parse_note(note)
    lines = [f"old {old_size}", *(notes.b64encode(h) for h in proof)]
    body = ("".join(f"{line}\n" for line in lines) + "\n" + note).encode("utf-8")
    _check_length(len(body))
    return body


def _parse_old_size(line: str) -> int:
    # The old size line: 'old', one space, ASCII decimal without leading zeros.
    prefix, space, size = line.partition(" ")
    if prefix != "old" or not space or not _DECIMAL.fullmatch(size):
        raise errors.FormatError("add-checkpoint: the first line must be 'old <decimal size>'")
    return int(size)


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse an add-checkpoint request body: the exact inverse of :func:`format_add_checkpoint`.

    The note is checked to be a well-formed signed note, not verified.
    """
    # 1. A bounded body of valid UTF-8.
    _check_length(len(body))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.FormatError("add-checkpoint: body is not valid UTF-8") from exc
    # 2. Header lines (each non-empty and newline-terminated) up to the first empty line.
    split = text.find("\n\n")
    if split < 0:
        raise errors.FormatError("add-checkpoint: no empty line before the checkpoint")
    header, note = text[:split].split("\n"), text[split + 2 :]
    # 3. The old size line, then up to 63 consistency proof lines of one base64 hash each.
    old_size = _parse_old_size(header[0])
    proof = tuple(
        notes.b64decode(line, f"add-checkpoint: proof line {i + 1}")
        for i, line in enumerate(header[1:])
    )
    _check_request(old_size, proof)
    # 4. The checkpoint: a signed note (its signatures are checked by the witness).
    notes.parse_note(note)
    return AddCheckpoint(old_size, proof, note)
