"""The one exception tree of Indelible.

Every error Indelible raises on purpose is an :class:`IndelibleError`. Each class has a
stable ``code`` (used in the JSON error shape and in ``--json`` CLI output) and a default
HTTP ``status`` (mapped at the edge, never inside the service).

::

    IndelibleError
    ├── InputError                  bad input, nothing was changed (4xx)
    │   ├── MalformedJSON           not strict JSON: duplicate keys, NaN, bad UTF-8 (400)
    │   ├── InvalidEvent            fails validation; carries every FieldError (422)
    │   │   └── InvalidRules        an alert rules document is invalid; every problem (422)
    │   ├── LimitExceeded           too large, too deep, too many items (413)
    │   ├── FormatError             a note, key, proof or path is not in its format (400)
    │   ├── UnsupportedMediaType    a request body in a media type the route does not take (415)
    │   ├── MethodNotAllowed        an HTTP method the route does not answer (405)
    │   ├── ReasonRequired          the tenant requires X-Audit-Reason on reads (400)
    │   ├── AlreadyExists           a tenant with that name or origin exists (409)
    │   ├── NotRepresentable        the answer does not fit the asked format (422)
    │   └── LastAdminKey            revoking it would leave the tenant without an admin (409)
    ├── Unauthenticated             no API key, or one that is unknown or revoked (401)
    ├── Forbidden                   the key's role does not allow the route (403)
    ├── Conflict                    the same event_id with different content (409)
    ├── NotFound                    no such entry, checkpoint or log (404)
    ├── RetryLater                  refused for now; carries retry_after (Retry-After header)
    │   ├── Overloaded              bounded queue full (503)
    │   └── RateLimited             too many failed authentications from one address (429)
    ├── UpstreamError               a time-stamping authority or witness failed or refused (502)
    ├── ConfigError                 a setting is missing or invalid; names the setting
    ├── StoreError                  the store failed; the write was NOT acknowledged (503)
    │   ├── StoreLocked             another process holds the log's write lease
    │   └── DuplicateEventId        a batch repeats an event_id already stored (nothing written)
    └── VerificationError           evidence does not verify; carries seq/expected/computed
        ├── ProofError              an inclusion or consistency proof does not verify
        ├── SignatureError          a signed note has no valid signature from the key
        ├── ChainError              prev_hash does not match the previous leaf hash
        ├── LeafError               stored bytes, hash, index columns or commitments disagree
        ├── TreeError               stored tree (tiles) or root disagrees with the leaves
        ├── InconsistentTree        a tree is not an append-only extension of a checkpoint
        ├── TimestampError          an RFC 3161 token does not verify or covers other bytes
        └── BundleError             an evidence bundle is malformed or its parts disagree

Verification functions return ``None`` or raise a :class:`VerificationError`; every
third-party failure (bad base64, ``InvalidSignature``) is re-raised as one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AlreadyExists",
    "BundleError",
    "ChainError",
    "ConfigError",
    "Conflict",
    "DuplicateEventId",
    "FieldError",
    "Forbidden",
    "FormatError",
    "InconsistentTree",
    "IndelibleError",
    "InputError",
    "InvalidEvent",
    "InvalidRules",
    "LastAdminKey",
    "LeafError",
    "LimitExceeded",
    "MalformedJSON",
    "MethodNotAllowed",
    "NotFound",
    "NotRepresentable",
    "Overloaded",
    "ProofError",
    "RateLimited",
    "ReasonRequired",
    "SignatureError",
    "StoreError",
    "RetryLater",
    "StoreLocked",
    "TimestampError",
    "TreeError",
    "Unauthenticated",
    "UpstreamError",
    "UnsupportedMediaType",
    "VerificationError",
]


class IndelibleError(Exception):
    """Base of every error Indelible raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Structured detail for the JSON error shape (empty by default)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """The one JSON error shape: ``{"error": {"code", "message", "details"}}``."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details()}}


class InputError(IndelibleError):
    code = "invalid_input"
    status = 400


class MalformedJSON(InputError):
    code = "malformed_json"
    status = 400


@dataclass(frozen=True)
class FieldError:
    """One rule one field broke. ``field`` is a JSON pointer relative to the item."""

    field: str
    rule: str
    message: str
    index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "rule": self.rule, "message": self.message}
        if self.index is not None:
            out["index"] = self.index
        return out


class InvalidEvent(InputError):
    code = "invalid_event"
    status = 422

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else None
        summary = f"{first.field or '/'}: {first.message}" if first else "invalid event"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(summary + more)

    def details(self) -> dict[str, Any]:
        return {"errors": [e.to_dict() for e in self.errors]}


class InvalidRules(InvalidEvent):
    """An alert rules document breaks the rules format; ``errors`` names every problem."""

    code = "invalid_rules"


class LimitExceeded(InputError):
    code = "limit_exceeded"
    status = 413

    def __init__(self, message: str, *, limit: str, maximum: int, actual: int | None = None):
        super().__init__(message)
        self.limit, self.maximum, self.actual = limit, maximum, actual

    def details(self) -> dict[str, Any]:
        return {"limit": self.limit, "maximum": self.maximum, "actual": self.actual}


class FormatError(InputError):
    code = "bad_format"
    status = 400


class UnsupportedMediaType(InputError):
    code = "unsupported_media_type"
    status = 415


class MethodNotAllowed(InputError):
    code = "method_not_allowed"
    status = 405


class ReasonRequired(InputError):
    code = "reason_required"
    status = 400


class AlreadyExists(InputError):
    code = "already_exists"
    status = 409


class NotRepresentable(InputError):
    """The request is fine, but its answer cannot be given in the format asked for (an entry
    too long for a tlog-tiles entry bundle): the message names the route that can."""

    code = "not_representable"
    status = 422


class LastAdminKey(InputError):
    code = "last_admin_key"
    status = 409


class Unauthenticated(IndelibleError):
    code = "unauthenticated"
    status = 401


class Forbidden(IndelibleError):
    code = "forbidden"
    status = 403


class Conflict(IndelibleError):
    code = "event_id_conflict"
    status = 409

    def __init__(self, message: str, *, event_id: str, seq: int) -> None:
        super().__init__(message)
        self.event_id, self.seq = event_id, seq

    def details(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "seq": self.seq}


class NotFound(IndelibleError):
    code = "not_found"
    status = 404


class RetryLater(IndelibleError):
    """Refused for now, not for good: ``retry_after`` seconds is sent as ``Retry-After``."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}


class Overloaded(RetryLater):
    code = "overloaded"
    status = 503


class RateLimited(RetryLater):
    code = "rate_limited"
    status = 429


class UpstreamError(IndelibleError):
    """A remote party (time-stamping authority, witness, remote log) failed or refused.

    ``status`` is the HTTP status the remote answered, when it answered at all.
    """

    code = "upstream_error"
    status = 502

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url, self.upstream_status = url, status

    def details(self) -> dict[str, Any]:
        return {"url": self.url, "upstream_status": self.upstream_status}


class ConfigError(IndelibleError):
    code = "bad_setting"
    status = 500

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting

    def details(self) -> dict[str, Any]:
        return {"setting": self.setting}


class StoreError(IndelibleError):
    code = "store_error"
    status = 503


class StoreLocked(StoreError):
    code = "store_locked"
    status = 503


class DuplicateEventId(StoreError):
    """An append hit the unique event_id index; the transaction was rolled back."""

    code = "duplicate_event_id"
    status = 409


class VerificationError(IndelibleError):
    """Evidence did not verify. ``seq`` is the first entry that broke, when one is known."""

    code = "verification_failed"
    status = 422

    def __init__(
        self,
        message: str,
        *,
        seq: int | None = None,
        expected: str | None = None,
        computed: str | None = None,
    ) -> None:
        where = f"seq {seq}: " if seq is not None else ""
        super().__init__(where + message)
        self.seq, self.expected, self.computed = seq, expected, computed

    def details(self) -> dict[str, Any]:
        return {"seq": self.seq, "expected": self.expected, "computed": self.computed}


class ProofError(VerificationError):
    code = "invalid_proof"


class SignatureError(VerificationError):
    code = "invalid_signature"


class ChainError(VerificationError):
    code = "broken_chain"


class LeafError(VerificationError):
    code = "leaf_mismatch"


class TreeError(VerificationError):
    code = "tree_mismatch"


class InconsistentTree(VerificationError):
    code = "inconsistent_tree"


class TimestampError(VerificationError):
    code = "invalid_timestamp"


class BundleError(VerificationError):
    code = "invalid_bundle"
