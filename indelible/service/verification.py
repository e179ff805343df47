"""Full verification of a tenant's log, and the record of its last result.

``POST /v1/verify``, the web UI's integrity page and ``indelible verify`` all run
:func:`verify_and_record`: the log is recomputed from its stored bytes
(:func:`~indelible.service.verify.verify_log`), then the outcome — passed or failed, when, by
whom, how much it covered, and on failure the error — is kept beside the log (its per-log
settings table, under ``last_verification``), where :func:`last_verification` finds it.

The record is a status note, not evidence: it lives outside the Merkle tree and is replaced by
each run. What proves the log is the verification itself, which anyone holding the log can
repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from indelible.core.note import Verifier
from indelible.core.timestamps import format_timestamp
from indelible.errors import StoreError, VerificationError
from indelible.service.verify import Progress, verify_log
from indelible.storage.base import LogInfo, Store

__all__ = ["RECORD_NAME", "last_verification", "verify_and_record"]

RECORD_NAME = "last_verification"
log = logging.getLogger("indelible.service")


def verify_and_record(
    store: Store,
    info: LogInfo,
    verifier: Verifier,
    *,
    by: str,
    clock_ms: Callable[[], int],
    held: Sequence[str] = (),
    workers: int = 1,
    progress: Progress | None = None,
    raise_failure: bool = False,
) -> dict[str, Any]:
    """Verify the whole log; the result as ``POST /v1/verify`` answers it (``ok`` false, with
    the error, on failure), recorded as the log's last verification before it is returned.

    With ``raise_failure`` a failure is recorded, then its ``VerificationError`` raised. A
    record that cannot be stored is logged; the verification's answer stands.
    """
    started = clock_ms()
    failed: VerificationError | None = None
    try:
        report = verify_log(store, info, verifier, held=held, workers=workers, progress=progress)
    except VerificationError as failure:
        failed = failure
        result: dict[str, Any] = {"ok": False, **failure.to_dict()}
    else:
        result = {"ok": True, **report.to_dict()}
    finished = clock_ms()
    record = {
        "ok": result["ok"],
        "at": format_timestamp(finished),
        "by": by,
        "duration_ms": finished - started,
        "result": result,
    }
    try:
        store.set_log_setting(info.log_id, RECORD_NAME, orjson.dumps(record).decode("utf-8"))
    except StoreError as exc:
        log.warning("could not record the verification of %s: %s", info.name, exc.message)
    if failed is not None and raise_failure:
        raise failed
    return result


def last_verification(store: Store, log_id: int) -> dict[str, Any] | None:
    """The record of the log's last full verification, or None when it was never run."""
    raw = store.get_log_settings(log_id).get(RECORD_NAME)
    if raw is None:
        return None
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StoreError(f"the stored {RECORD_NAME} record is not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise StoreError(f"the stored {RECORD_NAME} record is not an object")
    return record
