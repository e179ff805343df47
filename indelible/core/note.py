"""C2SP signed notes (c2sp.org/signed-note) and Ed25519 keys in vkey / skey form.

A signed note is a text ending in a newline, a blank line, and one or more signature lines::

    <text, ending in "\\n">
    <blank line>
    — <key name> <base64(4-byte key hash ‖ signature)>

Indelible signs only with Ed25519 (signature type 0x01). The key hash is the first four bytes of
SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key). Keys travel as text:

- verifier key (vkey): ``<name>+<8 hex key hash>+<base64(0x01 ‖ public key)>``
- signer key (skey):   ``PRIVATE+KEY+<name>+<8 hex key hash>+<base64(0x01 ‖ 32-byte seed)>``,
  the private-key text form that signed-note tooling commonly exchanges.

Parsing is strict: anything that is not exactly in its format raises :class:`FormatError`
(or :class:`LimitExceeded` past the size limits) naming what is wrong, and :func:`format_note`
is the exact inverse of :func:`parse_note`. Base64 must be canonical (standard alphabet,
padding, zero pad bits), so every parsed value formats back to the same characters.

:func:`open_note` returns the note with only the signatures it verified, or raises
:class:`SignatureError`. Pure: no files, sockets or clocks; key material is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from indelible import errors

__all__ = [
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "add_signature",
    "b64decode",
    "b64encode",
    "check_key_name",
    "ed25519_public_key",
    "format_note",
    "format_skey",
    "format_vkey",
    "generate_signer",
    "open_note",
    "parse_note",
    "parse_skey",
    "parse_vkey",
    "sign_note",
    "split_key",
]

MAX_NOTE_BYTES = 1 << 20
"""Largest note accepted or written, in UTF-8 bytes (signatures included)."""

MAX_SIGNATURES = 100
"""Most signature lines in one note (the spec asks verifiers to accept at least 16)."""

_ALG_ED25519 = 0x01
_KEY_HASH_SIZE = 4
_ED25519_KEY_SIZE = 32
_SIG_PREFIX = "\u2014 "  # em dash, space
_SKEY_PREFIX = "PRIVATE+KEY+"
_HEX_KEY_HASH = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")

# The Unicode White_Space property, listed so that the answer does not depend on the
# Unicode database of the running Python.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


# ---------------------------------------------------------------------------------------------
# Small checks shared by keys and notes


def _check_utf8(s: str, what: str) -> bytes:
    """Return ``s`` as UTF-8 bytes; a lone surrogate is not valid UTF-8."""
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise errors.FormatError(f"{what} is not valid UTF-8") from exc


def _check_no_controls(s: str, what: str) -> None:
    """signed-note §Format: no ASCII control characters other than newline."""
    found = _CONTROL.search(s)
    if found is not None:
        code = ord(found.group())
        raise errors.FormatError(f"{what} contains the control character U+{code:04X}")


def check_key_name(name: str) -> None:
    """Raise :class:`FormatError` unless ``name`` is a valid key name.

    signed-note §Format: non-empty, no Unicode spaces, no plus. Control characters are
    refused too, since a note that carried them could never be valid.
    """
    if not name:
        raise errors.FormatError("key name is empty")
    _check_utf8(name, "key name")
    if "+" in name:
        raise errors.FormatError(f"key name {name!r} contains '+'")
    if any(ch in _WHITE_SPACE for ch in name):
        raise errors.FormatError(f"key name {name!r} contains white space")
    _check_no_controls(name, f"key name {name!r}")


def b64encode(raw: bytes) -> str:
    """Standard base64 (RFC 4648 §4) with padding, as every format here spells it."""
    return base64.b64encode(raw).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Decode standard base64 (RFC 4648 §4), refusing any non-canonical spelling.

    Raises :class:`FormatError` naming ``what``.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise errors.FormatError(f"{what} is not valid base64") from exc
    if b64encode(raw) != text:
        raise errors.FormatError(f"{what} is not canonical base64")
    return raw


def _key_hash(name: str, public_key: bytes) -> bytes:
    """signed-note §Ed25519 signatures: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]."""
    data = name.encode("utf-8") + b"\n" + bytes([_ALG_ED25519]) + public_key
    return hashlib.sha256(data).digest()[:_KEY_HASH_SIZE]


def ed25519_public_key(seed: bytes) -> bytes:
    """The raw 32-byte Ed25519 public key of a 32-byte seed."""
    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _key_id(name: str, key_hash: bytes) -> str:
    return f"{name}+{key_hash.hex()}"


# ---------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 verifier key: checks signatures by one (name, key hash)."""

    name: str
    key_hash: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != _ED25519_KEY_SIZE:
            raise errors.FormatError("an Ed25519 public key is 32 bytes")
        if self.key_hash != _key_hash(self.name, self.public_key):
            raise errors.FormatError(f"key hash does not match key {self.name!r}")

    def verify(self, message: bytes, signature: bytes) -> None:
        """Return ``None`` if ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError) as exc:
            key = _key_id(self.name, self.key_hash)
            raise errors.SignatureError(f"invalid signature for key {key}") from exc


@dataclass(frozen=True)
class Signer:
    """An Ed25519 signer key. ``seed`` is the 32-byte private seed (RFC 8032)."""

    name: str
    key_hash: bytes
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.seed) != _ED25519_KEY_SIZE:
            raise errors.FormatError("an Ed25519 seed is 32 bytes")
        if self.key_hash != _key_hash(self.name, ed25519_public_key(self.seed)):
            raise errors.FormatError(f"key hash does not match key {self.name!r}")

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)

    def verifier(self) -> Verifier:
        """The matching verifier key."""
        return Verifier(self.name, self.key_hash, ed25519_public_key(self.seed))


def generate_signer(name: str, seed: bytes) -> Signer:
    """A signer for ``name`` from 32 random bytes the caller supplies."""
    check_key_name(name)
    if len(seed) != _ED25519_KEY_SIZE:
        raise errors.FormatError("an Ed25519 seed is 32 bytes")
    return Signer(name, _key_hash(name, ed25519_public_key(seed)), seed)


def split_key(
    text: str, what: str, key_type: int = _ALG_ED25519, kind: str = "Ed25519"
) -> tuple[str, bytes, bytes]:
    """Split ``<name>+<hex hash>+<base64(key_type ‖ key)>`` into name, key hash, 32-byte key.

    The base64 part may itself contain '+', so only the first two '+' separate fields.
    ``key_type`` is the one algorithm byte accepted (0x01 for signed-note Ed25519, 0x04 for
    tlog-cosignature/v1); errors name ``what`` and ``kind`` and never echo the key.
    """
    name, plus1, rest = text.partition("+")
    hash_hex, plus2, key_b64 = rest.partition("+")
    if not (plus1 and plus2):
        raise errors.FormatError(f"{what}: expected <name>+<key hash>+<key>")
    try:
        check_key_name(name)
    except errors.FormatError as exc:
        raise errors.FormatError(f"{what}: {exc.message}") from exc
    if not _HEX_KEY_HASH.fullmatch(hash_hex):
        raise errors.FormatError(f"{what}: key hash must be 8 lowercase hex digits")
    key = b64decode(key_b64, f"{what}: key")
    if not key:
        raise errors.FormatError(f"{what}: key is empty")
    if key[0] != key_type:
        raise errors.FormatError(
            f"{what}: unsupported key type 0x{key[0]:02x} ({kind} is 0x{key_type:02x})"
        )
    if len(key) != 1 + _ED25519_KEY_SIZE:
        raise errors.FormatError(f"{what}: an Ed25519 key is 32 bytes")
    return name, bytes.fromhex(hash_hex), key[1:]


def parse_vkey(text: str) -> Verifier:
    """Parse a verifier key ``<name>+<hex key hash>+<base64(0x01 ‖ public key)>``."""
    name, key_hash, public_key = split_key(text, "vkey")
    if key_hash != _key_hash(name, public_key):
        raise errors.FormatError("vkey: key hash does not match the name and key")
    return Verifier(name, key_hash, public_key)


def format_vkey(verifier: Verifier) -> str:
    """The verifier key text of ``verifier``."""
    key = b64encode(bytes([_ALG_ED25519]) + verifier.public_key)
    return f"{_key_id(verifier.name, verifier.key_hash)}+{key}"


def parse_skey(text: str) -> Signer:
    """Parse a signer key ``PRIVATE+KEY+<name>+<hex key hash>+<base64(0x01 ‖ seed)>``.

    Error messages never include the key text.
    """
    if not text.startswith(_SKEY_PREFIX):
        raise errors.FormatError("skey: must start with PRIVATE+KEY+")
    name, key_hash, seed = split_key(text[len(_SKEY_PREFIX) :], "skey")
    if key_hash != _key_hash(name, ed25519_public_key(seed)):
        raise errors.FormatError("skey: key hash does not match the name and key")
    return Signer(name, key_hash, seed)


def format_skey(signer: Signer) -> str:
    """The signer key text of ``signer``. It is a secret: never log it."""
    key = b64encode(bytes([_ALG_ED25519]) + signer.seed)
    return f"{_SKEY_PREFIX}{_key_id(signer.name, signer.key_hash)}+{key}"


# ---------------------------------------------------------------------------------------------
# Notes


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key hash, signature bytes (any key type)."""

    name: str
    key_hash: bytes
    signature: bytes


@dataclass(frozen=True)
class Note:
    """A note text (ending in a newline) and its signatures, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]


def _decode_note(data: bytes | str) -> str:
    """Check the size limit and decode UTF-8 strictly."""
    raw = _check_utf8(data, "note") if isinstance(data, str) else data
    if len(raw) > MAX_NOTE_BYTES:
        raise errors.LimitExceeded(
            f"note is larger than {MAX_NOTE_BYTES} bytes",
            limit="note_bytes",
            maximum=MAX_NOTE_BYTES,
            actual=len(raw),
        )
    if isinstance(data, str):
        return data
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.FormatError("note is not valid UTF-8") from exc


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise errors.FormatError("note text must be non-empty and end with a newline")
    _check_utf8(text, "note text")
    _check_no_controls(text, "note text")


def _check_signature_count(count: int) -> None:
    if count == 0:
        raise errors.FormatError("note has no signature lines")
    if count > MAX_SIGNATURES:
        raise errors.LimitExceeded(
            f"note has more than {MAX_SIGNATURES} signatures",
            limit="note_signatures",
            maximum=MAX_SIGNATURES,
            actual=count,
        )


def _parse_signature_line(line: str) -> NoteSignature:
    """signed-note §Signatures: ``— <key name> <base64(key hash ‖ signature)>``."""
    if not line.startswith(_SIG_PREFIX):
        raise errors.FormatError("signature line must start with an em dash and a space")
    name, space, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not space:
        raise errors.FormatError("signature line must be '— <key name> <signature>'")
    check_key_name(name)
    raw = b64decode(sig_b64, f"signature of {name!r}")
    if len(raw) <= _KEY_HASH_SIZE:
        raise errors.FormatError(f"signature of {name!r} is shorter than 5 bytes")
    return NoteSignature(name, raw[:_KEY_HASH_SIZE], raw[_KEY_HASH_SIZE:])


def parse_note(data: bytes | str) -> Note:
    """Parse a signed note without verifying it. Keeps every signature line, in order."""
    # 1. §Format: at most MAX_NOTE_BYTES of valid UTF-8 ...
    note = _decode_note(data)
    # 2. ... with no ASCII control characters other than newline.
    _check_no_controls(note, "note")
    # 3. The text is separated from the signatures by the last empty line in the note.
    split = note.rfind("\n\n")
    if split < 0:
        raise errors.FormatError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    # 4. One or more signature lines, each ending in a newline.
    if not block:
        raise errors.FormatError("note has no signature lines after the blank line")
    if not block.endswith("\n"):
        raise errors.FormatError("note must end with a signature line and a newline")
    lines = block[:-1].split("\n")
    _check_signature_count(len(lines))
    # 5. Each line is '— <key name> <base64(4-byte key hash ‖ signature)>'.
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def _format_signature_line(sig: NoteSignature) -> str:
    check_key_name(sig.name)
    if len(sig.key_hash) != _KEY_HASH_SIZE:
        raise errors.FormatError(f"key hash of {sig.name!r} is not 4 bytes")
    if not sig.signature:
        raise errors.FormatError(f"signature of {sig.name!r} is empty")
    return f"{_SIG_PREFIX}{sig.name} {b64encode(sig.key_hash + sig.signature)}\n"


def format_note(note: Note) -> str:
    """The signed note text of ``note``: the exact inverse of :func:`parse_note`."""
    _check_text(note.text)
    _check_signature_count(len(note.signatures))
    lines = "".join(_format_signature_line(sig) for sig in note.signatures)
    out = f"{note.text}\n{lines}"
    _decode_note(out)  # size limit
    return out


def _sign(text: str, signer: Signer) -> NoteSignature:
    return NoteSignature(signer.name, signer.key_hash, signer.sign(text.encode("utf-8")))


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign ``text`` (non-empty, ending in a newline) with each signer, in order."""
    _check_text(text)
    return format_note(Note(text, tuple(_sign(text, signer) for signer in signers)))


def add_signature(note: bytes | str, signer: Signer) -> str:
    """Append ``signer``'s signature to a signed note, e.g. a witness cosigning a checkpoint.

    The existing signatures are kept, except an earlier one by the same key, which the new
    one replaces. Nothing is verified here: open the note first.
    """
    parsed = parse_note(note)
    others = tuple(
        sig
        for sig in parsed.signatures
        if (sig.name, sig.key_hash) != (signer.name, signer.key_hash)
    )
    return format_note(Note(parsed.text, (*others, _sign(parsed.text, signer))))


def _index_verifiers(verifiers: Sequence[Verifier]) -> dict[tuple[str, bytes], Verifier]:
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        key = (verifier.name, verifier.key_hash)
        if known.setdefault(key, verifier) != verifier:
            raise errors.FormatError(f"two verifier keys share the id {_key_id(*key)}")
    return known


def _unverified(note: Note, known: dict[tuple[str, bytes], Verifier]) -> errors.SignatureError:
    return errors.SignatureError(
        "unverified note: no signature from a known key",
        expected=", ".join(_key_id(*key) for key in known) or None,
        computed=", ".join(_key_id(s.name, s.key_hash) for s in note.signatures),
    )


def open_note(data: bytes | str, verifiers: Sequence[Verifier]) -> Note:
    """Parse and verify a signed note; return it with only the verified signatures.

    Raises :class:`FormatError` / :class:`LimitExceeded` if the note is malformed and
    :class:`SignatureError` if a signature from a known key fails to verify or if no known
    key signed it.
    """
    # 1. Parse strictly (signed-note §Format).
    note = parse_note(data)
    known = _index_verifiers(verifiers)
    message = note.text.encode("utf-8")
    verified: dict[tuple[str, bytes], NoteSignature] = {}
    for sig in note.signatures:
        key = (sig.name, sig.key_hash)
        verifier = known.get(key)
        # 2. §Signatures: ignore signatures from unknown keys, even when they share the name
        #    or the key hash (but not both) with a known key.
        if verifier is None:
            continue
        # 3. A known key's signature MUST be verified; one that fails rejects the whole note
        #    (the spec's SHOULD, taken as a MUST; repeated lines by one key are all checked).
        verifier.verify(message, sig.signature)
        verified.setdefault(key, sig)
    # 4. If no signature from a known key verified, the note MUST be rejected.
    if not verified:
        raise _unverified(note, known)
    return Note(note.text, tuple(verified.values()))
