"""C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): a log's signed tree head.

The checkpoint body is the text of a signed note (:mod:`indelible.core.note`)::

    <origin>
    <tree size, decimal>
    <base64 of the 32-byte RFC 6962 root hash>
    [extension lines]

Parsing accepts what the spec allows (any non-empty origin, extension lines) so that
checkpoints of other logs can be read. Signing is narrower: Indelible never writes extension
lines, and its origins hold no Unicode spaces and no '+', as the spec recommends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from indelible import errors
from indelible.core import note as notes

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "format_checkpoint",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
]

MAX_TREE_SIZE = (1 << 63) - 1
"""Largest tree size accepted (sizes are signed 64-bit integers in most verifiers)."""

_ROOT_SIZE = 32
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_CONTROL = re.compile(r"[\x00-\x1f]")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: log origin, tree size, root hash and opaque extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def _check_line(line: str, what: str) -> None:
    """Each line is non-empty, holds no newline and no other control character."""
    if not line:
        raise errors.FormatError(f"checkpoint: {what} is empty")
    found = _CONTROL.search(line)
    if found is not None:
        code = ord(found.group())
        raise errors.FormatError(f"checkpoint: {what} contains the control character U+{code:04X}")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise errors.FormatError(f"checkpoint: {what} is not valid UTF-8") from exc


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not 0 <= size <= MAX_TREE_SIZE:
        raise errors.FormatError(f"checkpoint: tree size must be from 0 to 2^63 - 1, not {size!r}")


def format_checkpoint(cp: Checkpoint) -> str:
    """The checkpoint body ``origin\\nsize\\nbase64(root)\\n`` plus any extension lines."""
    _check_line(cp.origin, "origin")
    _check_size(cp.size)
    if len(cp.root) != _ROOT_SIZE:
        raise errors.FormatError("checkpoint: root hash must be 32 bytes")
    for extension in cp.extensions:
        _check_line(extension, "extension line")
    lines = [cp.origin, str(cp.size), notes.b64encode(cp.root), *cp.extensions]
    return "".join(f"{line}\n" for line in lines)


def _parse_size(line: str) -> int:
    # 2. Tree size: ASCII decimal, no leading zeroes (unless it is 0).
    if not _DECIMAL.fullmatch(line):
        raise errors.FormatError("checkpoint: tree size must be decimal without leading zeros")
    size = int(line)
    _check_size(size)
    return size


def _parse_root(line: str) -> bytes:
    # 3. Root hash: standard base64 of the 32-byte RFC 6962 Merkle tree root.
    _check_line(line, "root hash")
    root = notes.b64decode(line, "checkpoint: root hash")
    if len(root) != _ROOT_SIZE:
        raise errors.FormatError(f"checkpoint: root hash is {len(root)} bytes, not 32")
    return root


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body (the note text): strict inverse of :func:`format_checkpoint`."""
    # tlog-checkpoint §Note text: at least three non-empty lines, each ending in a newline.
    if not body.endswith("\n"):
        raise errors.FormatError("checkpoint: body must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise errors.FormatError("checkpoint: needs origin, tree size and root hash lines")
    origin, size_line, root_line, *extensions = lines
    # 1. Origin: non-empty; clients MUST NOT assume more about its form.
    _check_line(origin, "origin")
    size = _parse_size(size_line)
    root = _parse_root(root_line)
    # 4. Extension lines, if any, MUST be non-empty.
    for extension in extensions:
        _check_line(extension, "extension line")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: notes.Signer) -> str:
    """The signed note of ``cp``. Refuses extension lines and origins with spaces or '+'."""
    if cp.extensions:
        raise errors.FormatError("checkpoint: Indelible never signs extension lines")
    try:
        notes.check_key_name(cp.origin)
    except errors.FormatError as exc:
        raise errors.FormatError(f"checkpoint: origin: {exc.message}") from exc
    return notes.sign_note(format_checkpoint(cp), [signer])


def open_checkpoint(
    note: bytes | str, verifier: notes.Verifier, origin: str | None = None
) -> tuple[Checkpoint, notes.Note]:
    """Verify a signed checkpoint with the log's key and parse it.

    Returns the checkpoint and the note holding only the log's verified signature. When
    ``origin`` is given, a checkpoint of any other log raises :class:`SignatureError`.
    """
    # 1. signed-note: the text MUST be ignored unless the log's signature verifies;
    #    other signatures (witnesses, rotated keys) are ignored.
    opened = notes.open_note(note, [verifier])
    # 2. tlog-checkpoint §Note text: origin, tree size, root hash, extension lines.
    cp = parse_checkpoint(opened.text)
    # 3. The checkpoint must be for the log the caller expects.
    if origin is not None and cp.origin != origin:
        raise errors.SignatureError(
            "checkpoint is for another log", expected=origin, computed=cp.origin
        )
    return cp, opened
