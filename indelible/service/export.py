"""Evidence bundles out of a store: one record's events, proved against one final checkpoint.

:func:`export_bundle` picks the newest *final* checkpoint (the one the witness policy
accepts), reads every event that targets or relates to the record (within ``since``/``until``
by ``occurred_at``) covered by it, proves each one's inclusion from the stored tiles, gathers
the checkpoint's cosignatures and timestamp tokens (asking the configured authorities for one
when the checkpoint has none yet), and signs the manifest with the log's key
(:mod:`indelible.core.bundle`). Events newer than that checkpoint are not in the bundle; the
result says how many there were, so the caller can export again once they are published.

Writing the ``audit.exported`` event is the caller's part: the HTTP route and the command
line both write it before the bundle is handed out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from indelible.core import merkle
from indelible.core.bundle import BundleEntry, build_bundle
from indelible.core.note import Signer
from indelible.core.tiles import TileNodes
from indelible.core.timestamps import format_timestamp
from indelible.errors import IndelibleError, LimitExceeded, NotFound
from indelible.service.anchoring import RFC3161, AnchorConfig, FinalCheckpoint
from indelible.storage.base import AnchorRow, EntryQuery, EntryRow, LogInfo, Store

__all__ = ["ExportRequest", "ExportResult", "export_bundle"]

_PAGE = 1_000


@dataclass(frozen=True)
class ExportRequest:
    """What to export and why. Times are epoch ms, ``[since, until)`` by ``occurred_at``."""

    target_type: str
    target_id: str
    reason: str
    exporter: dict[str, str]
    since_ms: int | None = None
    until_ms: int | None = None

    def query(self) -> dict[str, Any]:
        found: dict[str, Any] = {"target_type": self.target_type, "target_id": self.target_id}
        if self.since_ms is not None:
            found["since"] = format_timestamp(self.since_ms)
        if self.until_ms is not None:
            found["until"] = format_timestamp(self.until_ms)
        return found


@dataclass(frozen=True)
class ExportResult:
    bundle: bytes
    tree_size: int
    seqs: list[int]
    not_yet_covered: int  # matching events newer than the bundle's checkpoint
    timestamps: int
    cosignatures: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.bundle).hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "bytes": len(self.bundle),
            "tree_size": self.tree_size,
            "entries": len(self.seqs),
            "not_yet_covered": self.not_yet_covered,
            "timestamps": self.timestamps,
            "cosignatures": self.cosignatures,
        }


def _matching(
    store: Store, log: LogInfo, request: ExportRequest, size: int, max_events: int
) -> tuple[list[EntryRow], int]:
    base = EntryQuery(
        touching=(request.target_type, request.target_id),
        occurred_from_ms=request.since_ms,
        occurred_to_ms=request.until_ms,
    )
    covered = replace(base, max_seq=size - 1, limit=_PAGE)
    rows: list[EntryRow] = []
    while True:
        page = store.query_entries(log.log_id, covered)
        rows.extend(page)
        if len(rows) > max_events:
            raise LimitExceeded(
                f"more than {max_events} events match; narrow the export with since/until",
                limit="max_export_events",
                maximum=max_events,
            )
        if len(page) < _PAGE:
            break
        covered = replace(covered, after_seq=page[-1].seq)
    newer = store.count_entries(log.log_id, replace(base, after_seq=size - 1))
    return rows, newer


def _timestamps(
    store: Store,
    log: LogInfo,
    final: FinalCheckpoint,
    anchors: AnchorConfig,
    clock_ms: Callable[[], int],
) -> list[tuple[str, bytes]]:
    """The checkpoint's tokens; with none yet, ask each configured authority for one now."""
    from indelible.service import timestamping

    size = final.row.size
    held = store.list_anchors(log.log_id, size=size, kind=RFC3161)
    if not held and anchors.tsa_urls:
        message = final.row.note.encode()
        for url in anchors.tsa_urls:
            try:
                token = timestamping.request_timestamp(url, message, timeout=anchors.timeout)
                timestamping.verify_timestamp(token, message, anchors.tsa_roots)
                store.add_anchor(log.log_id, AnchorRow(size, RFC3161, url, token, clock_ms()))
            except IndelibleError:
                # Down, refused, or stamped meanwhile by the anchorer (then it is listed below);
                # the export goes on, and its summary counts the tokens it holds.
                continue
        held = store.list_anchors(log.log_id, size=size, kind=RFC3161)
    return [(row.authority, row.evidence) for row in held]


def export_bundle(
    store: Store,
    log: LogInfo,
    signer: Signer,
    final: FinalCheckpoint | None,
    request: ExportRequest,
    *,
    anchors: AnchorConfig,
    clock_ms: Callable[[], int],
    max_events: int,
) -> ExportResult:
    """Build the evidence bundle for ``request`` against ``final``; see the module docstring."""
    if final is None:
        raise NotFound("no final checkpoint yet: nothing can be proved")
    size = final.row.size
    rows, newer = _matching(store, log, request, size, max_events)
    nodes = TileNodes(lambda level, index: store.get_tile(log.log_id, level, index), size)
    entries = [
        BundleEntry(
            row.seq,
            row.leaf,
            tuple(merkle.inclusion_proof(row.seq, size, nodes.get_node)),
            row.personal,
        )
        for row in rows
    ]
    stamps = _timestamps(store, log, final, anchors, clock_ms)
    about = {
        "query": request.query(),
        "exported_by": request.exporter,
        "reason": request.reason,
        "exported_at": format_timestamp(clock_ms()),
    }
    bundle = build_bundle(
        signer=signer,
        checkpoint=final.row.note,
        cosignatures=final.cosignatures,
        timestamps=stamps,
        entries=entries,
        about=about,
    )
    seqs = [row.seq for row in rows]
    return ExportResult(bundle, size, seqs, newer, len(stamps), len(final.cosignatures))
