"""A C2SP tlog-witness (c2sp.org/tlog-witness), and the log's client of other witnesses.

**Witness side.** :class:`Witness` answers ``add-checkpoint``: it checks that a checkpoint of a
log it trusts is an append-only extension of the last one it cosigned, stores it atomically
and durably, and returns its Ed25519 cosignature/v1 line (c2sp.org/tlog-cosignature). Each
refusal is an exception whose class names the HTTP status the spec requires
(:data:`STATUS`); the HTTP edge is :mod:`indelible.server.witness_app`.

**Client side.** :func:`submit_checkpoint` sends a checkpoint and a consistency proof to a
witness and returns the cosignature lines it answered; a 409 becomes :class:`WitnessConflict`
carrying the size the witness holds, so the log can retry with a proof from that size (or
learn that its own store was rolled back). Which checkpoints are final (k of n witnesses) is
:mod:`indelible.service.anchoring`'s part.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from indelible import errors
from indelible.core import merkle
from indelible.core import note as notes
from indelible.core.checkpoint import parse_checkpoint
from indelible.core.cosignature import (
    CosignatureSigner,
    cosign,
    format_add_checkpoint,
    format_cosigner_skey,
    format_cosigner_vkey,
    generate_cosigner,
    parse_add_checkpoint,
    parse_cosigner_skey,
)
from indelible.storage.witness_state import StaleSize, WitnessState

__all__ = [
    "EMPTY_ROOT",
    "KEY_FILE",
    "SIZE_MEDIA_TYPE",
    "STATE_FILE",
    "STATUS",
    "ForkedCheckpoint",
    "InvalidProof",
    "UnknownLog",
    "UntrustedCheckpoint",
    "Witness",
    "WitnessConflict",
    "init_witness",
    "open_witness",
    "submit_checkpoint",
]

log = logging.getLogger("indelible.witness")

SIZE_MEDIA_TYPE = "text/x.tlog.size"
"""Content-Type of a 409 answer: the witness's size in decimal and a newline."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""RFC 6962 root of the empty tree: what a witness holds before its first checkpoint."""

KEY_FILE = "witness.skey"
STATE_FILE = "witness.db"

_EMPTY_ROOT_B64 = base64.b64encode(EMPTY_ROOT).decode("ascii")
_MAX_RESPONSE_BYTES = 1 << 20
_SIG_PREFIX = "\u2014 "


# ---------------------------------------------------------------------------------------------
# Refusals, one class per status of the spec


class WitnessConflict(errors.InputError):
    """409: the old size is not the size of the witness's latest cosigned checkpoint.

    ``size`` is that size (the ``text/x.tlog.size`` body). Raised by :class:`Witness` and, on
    the client side, by :func:`submit_checkpoint` (``url`` is then the witness's).
    """

    code = "witness_conflict"
    status = 409

    def __init__(self, message: str, *, size: int, url: str | None = None) -> None:
        super().__init__(message)
        self.size, self.url = size, url

    def details(self) -> dict[str, Any]:
        return {"size": self.size, "url": self.url}


class ForkedCheckpoint(errors.InputError):
    """409: a checkpoint of the size the witness holds, with another root (a split view)."""

    code = "split_view"
    status = 409

    def __init__(self, message: str, *, size: int, expected: bytes, computed: bytes) -> None:
        super().__init__(message)
        self.size, self.expected, self.computed = size, expected, computed

    def details(self) -> dict[str, Any]:
        return {"size": self.size, "expected": self.expected.hex(), "computed": self.computed.hex()}


class UnknownLog(errors.NotFound):
    """404: the checkpoint's origin is not a log this witness trusts."""

    code = "unknown_log"


class UntrustedCheckpoint(errors.Forbidden):
    """403: no signature on the checkpoint verifies with a key trusted for its origin."""

    code = "untrusted_checkpoint"


class InvalidProof(errors.InputError):
    """422: the consistency proof does not lead from the stored checkpoint to the new one."""

    code = "invalid_proof"
    status = 422


STATUS: tuple[tuple[type[errors.IndelibleError], int], ...] = (
    (WitnessConflict, 409),
    (ForkedCheckpoint, 409),
    (UnknownLog, 404),
    (UntrustedCheckpoint, 403),
    (InvalidProof, 422),
    (errors.LimitExceeded, 413),
    (errors.InputError, 400),
)
"""add-checkpoint refusals → HTTP status (tlog-witness §add-checkpoint); first match wins."""


# ---------------------------------------------------------------------------------------------
# The witness


class Witness:
    """Cosigns checkpoints of trusted logs that extend the last one it cosigned.

    ``clock_s`` returns the current POSIX time in whole seconds (the cosignature timestamp).
    """

    def __init__(
        self, state: WitnessState, signer: CosignatureSigner, clock_s: Callable[[], int]
    ) -> None:
        self.state, self.signer, self.clock_s = state, signer, clock_s

    @property
    def vkey(self) -> str:
        """The cosigner vkey to publish: verifiers of this witness's cosignatures need it."""
        return format_cosigner_vkey(self.signer.verifier())

    def add_log(self, vkey: str, origin: str | None = None) -> str:
        """Trust the log key ``vkey`` (a note vkey) for ``origin`` (default: the key's name)."""
        verifier = notes.parse_vkey(vkey)
        origin = verifier.name if origin is None else origin
        parse_checkpoint(f"{origin}\n0\n{_EMPTY_ROOT_B64}\n")  # a valid origin line
        self.state.add_log(origin, notes.format_vkey(verifier))
        return origin

    def add_checkpoint(self, body: bytes) -> str:
        """Handle one add-checkpoint request body; return the cosignature line (with newline).

        Raises one of the refusals in :data:`STATUS`; nothing is stored unless it returns.
        """
        # 1. Parse the body: old size, up to 63 proof hashes, empty line, signed note (400).
        request = parse_add_checkpoint(body)
        note = notes.parse_note(request.note)
        checkpoint = parse_checkpoint(note.text)
        origin = checkpoint.origin
        # 2. The origin must be a log the witness trusts (404).
        keys = self.state.log_keys(origin)
        if not keys:
            raise UnknownLog(f"this witness does not know the log {origin!r}")
        # 3. A signature by a key trusted for that origin must verify; others are ignored (403).
        try:
            notes.open_note(request.note, [notes.parse_vkey(k) for k in keys])
        except errors.SignatureError as exc:
            raise UntrustedCheckpoint(f"{origin}: {exc.message}") from exc
        # 4. The old size must not exceed the checkpoint's size (400). A checkpoint smaller
        #    than the one the witness holds is refused here or at step 5: never a rollback.
        old, new = request.old_size, checkpoint.size
        if old > new:
            raise errors.FormatError(f"old size {old} is larger than the checkpoint size {new}")
        # 5. The old size must be the size of the latest checkpoint cosigned for the origin,
        #    0 if none was (409, the body naming that size).
        latest = self.state.latest(origin)
        held_size, held_root = (0, EMPTY_ROOT) if latest is None else (latest.size, latest.root)
        if old != held_size:
            raise WitnessConflict(
                f"{origin}: the witness holds size {held_size}, not {old}", size=held_size
            )
        # 6. The consistency proof from the held checkpoint (422); at the same size the roots
        #    must be equal (409: two checkpoints of one size are a split view).
        try:
            self._check_consistency(
                held_size, held_root, checkpoint.size, checkpoint.root, request.proof
            )
        except (InvalidProof, ForkedCheckpoint) as exc:
            # The request is signed by the log: keep it, it may prove the log misbehaved.
            self.state.record_refusal(origin, self.clock_s(), exc.message, body)
            raise
        # 7. Store it atomically with the check of step 5 (compare-and-swap, fsync'd) ...
        now = self.clock_s()
        try:
            self.state.advance(
                origin,
                held_size,
                new,
                checkpoint.root,
                request.note,
                old_root=None if latest is None else latest.root,
                now_s=now,
            )
        except StaleSize as exc:
            raise WitnessConflict(
                f"{origin}: the witness now holds size {exc.size}", size=exc.size
            ) from exc
        # 8. ... and only then cosign it.
        log.info("cosigned %s at size %d", origin, new)
        return cosign(note.text, self.signer, now)

    @staticmethod
    def _check_consistency(
        old: int, old_root: bytes, new: int, new_root: bytes, proof: Sequence[bytes]
    ) -> None:
        if old == new:
            if new_root != old_root:
                raise ForkedCheckpoint(
                    f"a checkpoint of size {new} with another root than the one cosigned",
                    size=new,
                    expected=old_root,
                    computed=new_root,
                )
            if proof:
                raise InvalidProof(f"equal sizes ({old}) take an empty consistency proof")
            return
        if old == 0:
            if proof:
                raise InvalidProof("the consistency proof must be empty from old size 0")
            return
        try:
            merkle.verify_consistency(old, new, old_root, new_root, proof)
        except errors.ProofError as exc:
            raise InvalidProof(f"consistency proof {old} -> {new}: {exc.message}") from exc


def init_witness(directory: Path, name: str, random_bytes: Callable[[int], bytes]) -> Witness:
    """Create a witness in ``directory``: its cosigning key (mode 0600) and its state file."""
    signer = generate_cosigner(name, random_bytes(32))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise errors.AlreadyExists(f"a witness key exists already: {path}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(format_cosigner_skey(signer) + "\n")
        out.flush()
        os.fsync(out.fileno())
    state = WitnessState(directory / STATE_FILE)
    return Witness(state, signer, _unix_seconds)


def open_witness(directory: Path, clock_s: Callable[[], int] | None = None) -> Witness:
    """Open the witness in ``directory`` (see :func:`init_witness`). Close ``.state`` after."""
    path = directory / KEY_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise errors.NotFound(f"no witness in {directory} (run `indelible witness init`)") from exc
    signer = parse_cosigner_skey(text.rstrip("\n"))
    return Witness(WitnessState(directory / STATE_FILE), signer, clock_s or _unix_seconds)


def _unix_seconds() -> int:
    return int(time.time())


# ---------------------------------------------------------------------------------------------
# The log's client of witnesses


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST would be replayed as a GET without its body: refuse redirects."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _endpoint(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise errors.FormatError(f"a witness URL is http:// or https://, not {url!r}")
    return url.rstrip("/") + "/add-checkpoint"


def submit_checkpoint(
    url: str, old_size: int, proof: Sequence[bytes], note: str, *, timeout: float
) -> list[str]:
    """POST a checkpoint to the witness whose submission prefix is ``url``.

    Returns the signature lines it answered (each ending in a newline), unverified: check
    them with the witness's key (:func:`~indelible.core.cosignature.verify_cosignature`),
    ignoring lines by other keys. Raises :class:`WitnessConflict` with the witness's size on
    409 (``text/x.tlog.size``), :class:`UpstreamError` on any other failure.
    """
    endpoint = _endpoint(url)
    body = format_add_checkpoint(old_size, proof, note)
    request = urllib.request.Request(
        endpoint,
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "indelible"},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return _cosignature_lines(endpoint, response.read(_MAX_RESPONSE_BYTES + 1))
    except urllib.error.HTTPError as exc:
        with exc:
            raise _refusal(endpoint, exc) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise errors.UpstreamError(f"witness unreachable: {exc}", url=endpoint) from exc


def _cosignature_lines(url: str, raw: bytes) -> list[str]:
    """tlog-witness: one or more signature lines, each '— ...' and ending in a newline."""
    if len(raw) > _MAX_RESPONSE_BYTES:
        raise errors.UpstreamError("the witness answered more than 1 MiB", url=url, status=200)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    lines = text.splitlines(keepends=True)
    if not lines or any(not (ln.startswith(_SIG_PREFIX) and ln.endswith("\n")) for ln in lines):
        raise errors.UpstreamError(
            "the witness answered 200 without signature lines", url=url, status=200
        )
    return lines


def _refusal(url: str, exc: urllib.error.HTTPError) -> errors.IndelibleError:
    raw = exc.read(4096)
    media = (exc.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if exc.code == 409 and media == SIZE_MEDIA_TYPE:
        text = raw.decode("ascii", "replace")
        digits = text[:-1]
        if text.endswith("\n") and digits.isdigit() and (digits == "0" or digits[0] != "0"):
            return WitnessConflict(f"the witness holds size {digits}", size=int(digits), url=url)
    snippet = raw.decode("utf-8", "replace").strip()[:200]
    return errors.UpstreamError(
        f"the witness refused the checkpoint: HTTP {exc.code} {snippet}".rstrip(),
        url=url,
        status=exc.code,
    )
