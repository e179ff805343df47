"""Proof helpers: check a receipt against a checkpoint the client pins, and that the log
only grew since.

The client pins one checkpoint of its log, kept in the outbox file (``meta``), and
re-verifies its signature with the pinned verification key each time it is read back.

- :meth:`Prover.refresh` fetches the newest checkpoint, verifies its signature (and origin),
  and, when a checkpoint was pinned before, verifies an RFC 9162 consistency proof from the
  pinned tree to the new one before pinning the new one. A smaller tree, or another root for
  the same size, is :class:`~indelible.errors.InconsistentTree`.
- :meth:`Prover.verify_receipt` takes a receipt (``seq``, ``leaf_hash``), refreshes the pin
  when it does not cover ``seq`` yet, fetches the inclusion proof for the pinned size and
  verifies it against the pinned root. :class:`NotYetPublished` when no signed checkpoint
  covers the event yet (retry after the service's ``checkpoint_interval``).

Every failure of the evidence raises the :class:`~indelible.errors.VerificationError` family
(``SignatureError``, ``ProofError``, ``InconsistentTree``), carrying what was expected and
what was computed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from indelible import errors
from indelible.core.checkpoint import Checkpoint, open_checkpoint
from indelible.core.merkle import verify_consistency, verify_inclusion
from indelible.core.note import Verifier, parse_vkey
from indelible.sdk.outbox import Outbox

__all__ = ["NotYetPublished", "Prover"]

_PIN_KEY = "pinned_checkpoint"


class NotYetPublished(errors.IndelibleError):
    """No signed checkpoint covers the event yet; ask again after the next checkpoint."""

    code = "not_yet_published"
    status = 409


def _hex(value: Any, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except (TypeError, ValueError) as exc:
        raise errors.ProofError(f"{what} is not hex") from exc
    if len(raw) != 32:
        raise errors.ProofError(f"{what} is {len(raw)} bytes, not 32")
    return raw


class Prover:
    """Receipts and checkpoints checked against a pinned checkpoint (thread-safe)."""

    def __init__(
        self,
        http: httpx.Client | None,
        outbox: Outbox,
        *,
        vkey: str | None = None,
        origin: str | None = None,
    ) -> None:
        self._http, self._outbox = http, outbox
        self._verifier: Verifier | None = parse_vkey(vkey) if vkey is not None else None
        self._origin = origin
        self._lock = threading.Lock()

    def _need(self) -> tuple[httpx.Client, Verifier]:
        if self._verifier is None:
            raise ValueError("pass vkey= (the log's verification key) to check proofs")
        if self._http is None:
            raise ValueError("pass url= to fetch proofs from the service")
        return self._http, self._verifier

    def _get(self, path: str, **params: int) -> httpx.Response:
        http, _ = self._need()
        answer = http.get(path, params=params)
        if answer.status_code == 404:
            raise errors.NotFound(f"{path}: {answer.text[:200]}")
        if answer.status_code != 200:
            raise errors.UpstreamError(
                f"{path} answered {answer.status_code}: {answer.text[:200]}",
                url=str(answer.request.url),
                status=answer.status_code,
            )
        return answer

    def _open(self, note: str) -> Checkpoint:
        _, verifier = self._need()
        checkpoint, _ = open_checkpoint(note, verifier, self._origin)
        return checkpoint

    def pinned(self) -> Checkpoint | None:
        """The pinned checkpoint, its signature verified again; None when none is pinned."""
        note = self._outbox.get_meta(_PIN_KEY)
        return None if note is None else self._open(note)

    def pin(self, note: str) -> Checkpoint:
        """Pin a checkpoint obtained out of band (its signature is verified; no consistency
        check against a previous pin: use :meth:`refresh` for that)."""
        checkpoint = self._open(note)
        self._outbox.set_meta(_PIN_KEY, note)
        return checkpoint

    def refresh(self) -> Checkpoint:
        """Fetch the newest checkpoint; pin it once it verifies and extends the pinned one."""
        with self._lock:
            old = self.pinned()
            note = self._get("/v1/checkpoint").text
            new = self._open(note)
            if old is not None:
                self._check_extends(old, new)
            if old is None or new.size > old.size:
                self._outbox.set_meta(_PIN_KEY, note)
            return new if old is None or new.size >= old.size else old

    def _check_extends(self, old: Checkpoint, new: Checkpoint) -> None:
        if new.size < old.size:
            raise errors.InconsistentTree(
                f"the service's checkpoint has size {new.size}, smaller than the pinned "
                f"{old.size}: the log was cut",
                expected=str(old.size),
                computed=str(new.size),
            )
        if new.size == old.size:
            if new.root != old.root:
                raise errors.InconsistentTree(
                    f"two different roots for tree size {new.size}",
                    expected=old.root.hex(),
                    computed=new.root.hex(),
                )
            return
        answer = orjson.loads(
            self._get("/v1/proofs/consistency", old=old.size, new=new.size).content
        )
        proof = [_hex(h, "consistency proof element") for h in answer.get("proof", [])]
        try:
            verify_consistency(old.size, new.size, old.root, new.root, proof)
        except errors.ProofError as exc:
            raise errors.InconsistentTree(
                f"the log of size {new.size} does not extend the pinned checkpoint of size "
                f"{old.size}: {exc.message}",
                expected=exc.expected,
                computed=exc.computed,
            ) from exc

    def verify_receipt(self, receipt: Mapping[str, Any]) -> Checkpoint:
        """Verify that the receipt's leaf is entry ``seq`` of the log under the pinned
        checkpoint (refreshed when it does not cover ``seq``); the checkpoint used."""
        seq = receipt.get("seq")
        if not isinstance(seq, int) or seq < 0:
            raise errors.ProofError("a receipt needs a non-negative integer seq")
        leaf = _hex(receipt.get("leaf_hash"), "leaf_hash")
        pinned = self.pinned()
        if pinned is None or seq >= pinned.size:
            pinned = self.refresh()
        if seq >= pinned.size:
            raise NotYetPublished(
                f"seq {seq} is not covered by a signed checkpoint yet (size {pinned.size})"
            )
        answer = orjson.loads(
            self._get("/v1/proofs/inclusion", seq=seq, tree_size=pinned.size).content
        )
        proof = [_hex(h, "inclusion proof element") for h in answer.get("proof", [])]
        verify_inclusion(leaf, seq, pinned.size, proof, pinned.root)
        return pinned
