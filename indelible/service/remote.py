"""Checking a running Indelible from outside: is the log still an extension of what I hold?

:func:`check_remote` takes a checkpoint the caller held on to (a signed note), fetches the
service's newest final checkpoint and a consistency proof from the held size, and raises a
:class:`~indelible.errors.VerificationError` when the log was rewritten, forked or rolled
back. Everything the service sends is verified here with the caller's key; nothing it says
is trusted. HTTP is stdlib ``urllib``; the answer is limited in size.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson

from indelible.core import merkle
from indelible.core.checkpoint import Checkpoint, open_checkpoint
from indelible.core.note import Verifier, parse_vkey
from indelible.errors import (
    FormatError,
    InconsistentTree,
    ProofError,
    UpstreamError,
)

__all__ = ["RemoteCheck", "RemoteLog", "check_remote", "post_export"]

_MAX_ANSWER = 4 * 1024 * 1024


@dataclass(frozen=True)
class RemoteLog:
    """The ``/v1`` evidence routes of one tenant, read with its API key."""

    url: str
    token: str | None = None
    timeout: float = 30.0

    def get(self, path: str, **query: int) -> bytes:
        target = self.url.rstrip("/") + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        return self.send(urllib.request.Request(target, headers=self.auth_headers()))[0]

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def send(
        self, request: urllib.request.Request, limit: int = _MAX_ANSWER
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the answer; ``UpstreamError`` for any failure."""
        target = request.full_url
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                body: bytes = answer.read(limit + 1)
                headers = {k.lower(): v for k, v in answer.headers.items()}
        except urllib.error.HTTPError as exc:
            detail = _error_message(exc.read(64 * 1024))
            raise UpstreamError(
                f"{target} answered {exc.code}: {detail}", url=target, status=exc.code
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise UpstreamError(f"cannot reach {target}: {exc}", url=target) from None
        if len(body) > limit:
            raise UpstreamError(f"{target} answered more than {limit} bytes", url=target)
        return body, headers

    def vkey(self) -> Verifier:
        return parse_vkey(self.get("/v1/vkey").decode().strip())

    def checkpoint(self) -> str:
        return self.get("/v1/checkpoint").decode()

    def consistency(self, old: int, new: int) -> list[bytes]:
        document = _json(self.get("/v1/proofs/consistency", old=old, new=new))
        try:
            return [base64.b16decode(node, casefold=True) for node in document["proof"]]
        except (KeyError, TypeError, binascii.Error) as exc:
            raise FormatError(f"the consistency proof answer is malformed: {exc}") from None


_MAX_BUNDLE = 1 << 30


def post_export(remote: RemoteLog, request: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """``POST /v1/exports``: the bundle, and a summary from the answer's headers."""
    target = remote.url.rstrip("/") + "/v1/exports"
    headers = {**remote.auth_headers(), "Content-Type": "application/json"}
    body, answered = remote.send(
        urllib.request.Request(target, data=orjson.dumps(request), headers=headers),
        limit=_MAX_BUNDLE,
    )
    document = _json(body)
    digest = hashlib.sha256(body).hexdigest()
    if answered.get("indelible-bundle-sha256", digest) != digest:
        raise UpstreamError("the bundle received is not the one the service sent", url=target)
    entries = document.get("entries")
    summary = {
        "sha256": digest,
        "bytes": len(body),
        "entries": len(entries) if isinstance(entries, list) else 0,
        "tree_size": _tree_size(document),
        "not_yet_covered": int(answered.get("indelible-not-yet-covered", "0") or 0),
    }
    return body, summary


def _tree_size(bundle: dict[str, Any]) -> int | None:
    try:
        return int(str(bundle["checkpoint"]).split("\n")[1])
    except (KeyError, IndexError, ValueError):
        return None


def _error_message(body: bytes) -> str:
    try:
        return str(orjson.loads(body)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"the service answered something that is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise FormatError("the service answered JSON that is not an object")
    return document


@dataclass(frozen=True)
class RemoteCheck:
    """A held checkpoint and the service's newest one, proved consistent."""

    held: Checkpoint
    latest: Checkpoint
    latest_note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.latest.origin,
            "held_size": self.held.size,
            "latest_size": self.latest.size,
            "latest_root": self.latest.root.hex(),
            "checkpoint": self.latest_note,
        }


def check_remote(remote: RemoteLog, held_note: str, verifier: Verifier) -> RemoteCheck:
    """Prove the service's log extends ``held_note``; raise naming what broke if it does not."""
    # 1. The held checkpoint is the log's own (signed by the key the caller trusts).
    held, _ = open_checkpoint(held_note, verifier)
    # 2. So is the service's newest final checkpoint, and for the same log.
    note = remote.checkpoint()
    latest, _ = open_checkpoint(note, verifier, held.origin)
    # 3. A log never shrinks: a smaller tree is a rollback (a restored backup, a cut).
    if latest.size < held.size:
        raise InconsistentTree(
            f"the log has {latest.size} entries but you hold a checkpoint of {held.size}: "
            "it was rolled back",
            expected=str(held.size),
            computed=str(latest.size),
        )
    # 4. Same size, other root: the log was rewritten (a split view, a fork).
    if latest.size == held.size:
        if latest.root != held.root:
            raise InconsistentTree(
                f"the log's tree of size {held.size} has another root than the one you hold: "
                "it was rewritten",
                expected=held.root.hex(),
                computed=latest.root.hex(),
            )
        return RemoteCheck(held, latest, note)
    # 5. A larger tree must prove it contains the held one, unchanged (RFC 9162 §2.1.4).
    proof = remote.consistency(held.size, latest.size)
    try:
        merkle.verify_consistency(held.size, latest.size, held.root, latest.root, proof)
    except ProofError as exc:
        raise InconsistentTree(
            f"the log of size {latest.size} does not extend the checkpoint of size "
            f"{held.size} you hold: it was rewritten or forked ({exc.message})",
            expected=exc.expected,
            computed=exc.computed,
        ) from None
    return RemoteCheck(held, latest, note)
