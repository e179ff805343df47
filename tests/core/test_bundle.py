"""Evidence bundles: built from a real log, verified offline, and every tampering rejected
with its reason (the seq, for an entry)."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from indelible.core import merkle
from indelible.core.bundle import BUNDLE_FORMAT, BundleEntry, build_bundle, verify_bundle
from indelible.core.checkpoint import Checkpoint, sign_checkpoint
from indelible.core.cosignature import cosign, generate_cosigner
from indelible.core.encoding import canonical
from indelible.core.event import validate_event
from indelible.core.note import Signer, Verifier, generate_signer, parse_note, sign_note
from indelible.core.tiles import TileNodes
from indelible.errors import (
    BundleError,
    ProofError,
    SignatureError,
    TimestampError,
    VerificationError,
)
from indelible.service.ingest import Publisher, Sequencer
from indelible.service.logs import OpenLog, init_log
from indelible.storage.sqlite import SQLiteStore
from tests.factories import billing_event


def now() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Log:
    store: SQLiteStore
    opened: OpenLog

    @property
    def signer(self) -> Signer:
        assert self.opened.signer is not None
        return self.opened.signer

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier()

    def checkpoint(self) -> str:
        Publisher(self.store, self.opened.info, self.signer, clock_ms=now).publish()
        latest = self.store.latest_checkpoint(self.opened.info.log_id)
        assert latest is not None
        return latest.note

    def entries(self, seqs: list[int], size: int) -> list[BundleEntry]:
        log_id = self.opened.info.log_id
        nodes = TileNodes(lambda level, index: self.store.get_tile(log_id, level, index), size)
        out = []
        for seq in seqs:
            row = self.store.get_entry(log_id, seq)
            proof = tuple(merkle.inclusion_proof(seq, size, nodes.get_node))
            out.append(BundleEntry(seq, row.leaf, proof, row.personal))
        return out


# Events 0..29; INV-1 is the target of 1, 11, 21 (n % 10 == 1) and related to 5.
def _event(n: int) -> dict[str, Any]:
    target = {"type": "invoice", "id": f"INV-{n % 10}"}
    extra: dict[str, Any] = {}
    if n == 5:
        extra["related"] = [{"type": "invoice", "id": "INV-1"}]
    return billing_event(n, personal=n in (11, 21), target=target, **extra)


SEQS = [1, 5, 11, 21]
ABOUT = {
    "query": {"target_type": "invoice", "target_id": "INV-1"},
    "exported_by": {"id": "auditor-1", "type": "user"},
    "reason": "dispute 2026-114",
    "exported_at": "2026-12-03T10:00:00.000Z",
}
TOKEN = b"\x30\x03\x02\x01\x07"  # stands for a DER token; the checker below decides


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    path: Path = tmp_path_factory.mktemp("bundle")
    store = SQLiteStore(path / "log.db")
    opened = init_log(
        store, path / "keys", "acme", "example.com/acme", clock_ms=now, random_bytes=os.urandom
    )
    sequencer = Sequencer(store, opened.info, clock_ms=now, random_bytes=os.urandom)
    sequencer.append([validate_event(_event(n), now_ms=now()) for n in range(30)])
    sequencer.close()
    yield Log(store, opened)
    store.close()


WITNESS = generate_cosigner("witness.example/w1", b"\x07" * 32)
OTHER_WITNESS = generate_cosigner("witness.example/w2", b"\x08" * 32)


def _bundle(log: Log, **changes: Any) -> dict[str, Any]:
    note = log.checkpoint()
    body = parse_note(note).text
    parts: dict[str, Any] = {
        "signer": log.signer,
        "checkpoint": note,
        "cosignatures": [cosign(body, WITNESS, 1_764_000_000)],
        "timestamps": [("http://tsa.example/", TOKEN)],
        "entries": log.entries(SEQS, log.store.tree_size(log.opened.info.log_id)),
        "about": ABOUT,
    }
    parts.update(changes)
    return json.loads(build_bundle(**parts))


def _checker(note: str) -> Callable[[bytes, bytes], dict[str, Any]]:
    def check(token: bytes, message: bytes) -> dict[str, Any]:
        if token != TOKEN or message != note.encode():
            raise TimestampError("timestamp token covers other bytes than this checkpoint")
        return {"gen_time": "2026-12-03T10:00:00.000Z"}

    return check


def _verify(log: Log, document: dict[str, Any], **options: Any) -> Any:
    options.setdefault("check_timestamp", _checker(document["checkpoint"]))
    return verify_bundle(canonical(document), log.verifier, **options)


def test_a_bundle_verifies_offline_and_reports_what_it_proves(log: Log) -> None:
    document = _bundle(log)
    report = _verify(
        log, document, witnesses=[WITNESS.verifier(), OTHER_WITNESS.verifier()], quorum=1
    )
    assert [event["seq"] for event in report.events] == SEQS
    assert report.origin == "example.com/acme" and report.tree_size >= 30
    assert report.manifest["reason"] == "dispute 2026-114"
    assert report.manifest["query"] == ABOUT["query"]
    assert report.timestamps == [
        {
            "authority": "http://tsa.example/",
            "checked": True,
            "gen_time": "2026-12-03T10:00:00.000Z",
        }
    ]
    assert report.cosigners == [WITNESS.verifier().key_id]
    # Personal values travel with the bundle and are checked against their commitments.
    emails = [c for c in report.events[2]["event"]["changes"] if c["field"] == "email"]
    assert emails == [
        {"field": "email", "before": "old11@example.com", "after": "new11@example.com"}
    ]
    summary = report.to_dict()
    assert summary["entries"] == 4 and summary["root"] == report.root.hex()


def test_timestamps_are_reported_unchecked_without_a_checker(log: Log) -> None:
    report = verify_bundle(canonical(_bundle(log)), log.verifier)
    assert report.timestamps == [{"authority": "http://tsa.example/", "checked": False}]


def _edit_leaf(document: dict[str, Any]) -> None:
    entry = document["entries"][1]
    leaf = base64.b64decode(entry["leaf"]).replace(b"update", b"delete", 1)
    entry["leaf"] = base64.b64encode(leaf).decode()


def _drop(document: dict[str, Any]) -> None:
    del document["entries"][2]


def _reorder(document: dict[str, Any]) -> None:
    document["entries"].reverse()


def _add(document: dict[str, Any]) -> None:
    document["entries"].append(dict(document["entries"][0], seq=2))


def _personal(document: dict[str, Any]) -> None:
    item = document["entries"][2]["personal"][0]
    item["value"] = base64.b64encode(b'"mallory@example.com"').decode()


def _foreign_token(document: dict[str, Any]) -> None:
    document["timestamps"][0]["token"] = base64.b64encode(b"\x30\x00").decode()


@pytest.mark.parametrize(
    ("tamper", "error", "message", "seq"),
    [
        (_edit_leaf, ProofError, "different root", 5),
        (_drop, BundleError, "missing from the bundle", 11),
        (_reorder, BundleError, "in its order", None),
        (_add, BundleError, "not the ones the manifest lists", 2),
        (_personal, VerificationError, "commitment", 11),
        (_foreign_token, BundleError, "timestamp tokens differ", None),
    ],
)
def test_each_tampering_is_rejected_with_its_reason(
    log: Log,
    tamper: Callable[[dict[str, Any]], None],
    error: type[Exception],
    message: str,
    seq: int | None,
) -> None:
    document = _bundle(log)
    tamper(document)
    with pytest.raises(error, match=message) as caught:
        _verify(log, document)
    assert isinstance(caught.value, VerificationError) and caught.value.seq == seq


def test_a_swapped_checkpoint_is_rejected(log: Log) -> None:
    document = _bundle(log)
    # A checkpoint of the same log, validly signed, but not the one the manifest names.
    sequencer = Sequencer(log.store, log.opened.info, clock_ms=now, random_bytes=os.urandom)
    sequencer.append([validate_event(_event(30), now_ms=now())])
    sequencer.close()
    document["checkpoint"] = log.checkpoint()
    with pytest.raises(BundleError, match="not the one the manifest names") as caught:
        _verify(log, document)
    assert "size 30" in str(caught.value.expected) and "size 31" in str(caught.value.computed)


def test_a_token_the_checker_refuses_is_a_timestamp_error_naming_the_authority(
    log: Log,
) -> None:
    document = _bundle(log)

    def foreign(token: bytes, message: bytes) -> dict[str, Any]:
        raise TimestampError("timestamp token does not chain to a trusted root")

    with pytest.raises(TimestampError, match=r"http://tsa\.example/: .*trusted root"):
        _verify(log, document, check_timestamp=foreign)


def test_a_quorum_of_witnesses_must_have_cosigned(log: Log) -> None:
    document = _bundle(log)
    with pytest.raises(SignatureError, match="cosigned by 1 of the given witnesses, fewer than 2"):
        _verify(log, document, witnesses=[WITNESS.verifier(), OTHER_WITNESS.verifier()], quorum=2)
    document["cosignatures"] = [line.replace("A", "B", 1) for line in document["cosignatures"]]
    with pytest.raises(SignatureError, match="by 0 of"):
        _verify(log, document, witnesses=[WITNESS.verifier()], quorum=1)


def test_another_logs_key_refuses_the_manifest(log: Log) -> None:
    stranger = generate_signer("example.com/acme", os.urandom(32)).verifier()
    with pytest.raises(BundleError, match="manifest is not signed by this log's key"):
        verify_bundle(canonical(_bundle(log)), stranger)


def _resigned(log: Log, document: dict[str, Any], text: str) -> dict[str, Any]:
    document["manifest"] = sign_note(text, [log.signer])
    return document


def _manifest(document: dict[str, Any]) -> dict[str, Any]:
    text = parse_note(document["manifest"]).text
    return dict(json.loads(text.split("\n")[1]))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"not json", "not strict JSON"),
        (lambda d: canonical([1]), "not an evidence bundle"),
        (lambda d: canonical({**d, "format": "other"}), "not an evidence bundle"),
        (lambda d: canonical({**d, "extra": 1}), "members must be exactly"),
        (lambda d: canonical({**d, "manifest": 7}), "'manifest' must be a str"),
        (lambda d: canonical({**d, "manifest": "no note"}), "manifest is not signed"),
        (
            lambda d: canonical({**d, "checkpoint": d["manifest"]}),
            "checkpoint is not this log's checkpoint",
        ),
        (lambda d: canonical({**d, "entries": {}}), "'entries' must be a list"),
        (lambda d: canonical({**d, "cosignatures": [7]}), "list of strings"),
        (lambda d: canonical({**d, "timestamps": [{"token": 5}]}), "'token' must be a str"),
        (
            lambda d: canonical({**d, "timestamps": [{"authority": "x"}]}),
            "'token' is missing",
        ),
    ],
)
def test_a_malformed_bundle_is_refused(
    log: Log, mutate: Callable[[dict[str, Any]], bytes], message: str
) -> None:
    with pytest.raises(BundleError, match=message):
        verify_bundle(mutate(_bundle(log)), log.verifier)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("other-format/v1\n{}\n", "format line and one JSON line"),
        (f"{BUNDLE_FORMAT}\n{{}}\n{{}}\n", "format line and one JSON line"),
        (f"{BUNDLE_FORMAT}\n{{oops\n", "manifest is not JSON"),
        (f"{BUNDLE_FORMAT}\n[1]\n", "not a JSON object"),
        (f"{BUNDLE_FORMAT}\n{{}}\n", "'sha256' is missing"),
    ],
)
def test_a_malformed_manifest_is_refused_even_when_signed(
    log: Log, text: str, message: str
) -> None:
    document = _resigned(log, _bundle(log), text)
    with pytest.raises(BundleError, match=message):
        _verify(log, document)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(leaf=7), "leaf must be a base64 string"),
        (lambda e: e.update(leaf="***"), "leaf is not valid base64"),
        (lambda e: e.update(leaf="QQ"), "leaf is not valid base64"),
        (lambda e: e.update(leaf="QR=="), "leaf is not canonical base64"),
        (lambda e: e.update(proof="x"), "'proof' must be a list"),
        (lambda e: e.update(personal="x"), "'personal' must be a list"),
        (lambda e: e.update(personal=[{"salt": "", "value": ""}]), "'pointer' is missing"),
    ],
)
def test_a_malformed_entry_is_refused_with_its_seq(
    log: Log, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    document = _bundle(log)
    change(document["entries"][0])
    with pytest.raises(BundleError, match=message):
        _verify(log, document)


def test_an_entry_about_another_record_is_refused(log: Log) -> None:
    size = log.store.tree_size(log.opened.info.log_id)
    document = _bundle(log, entries=log.entries([1, 2], size))
    with pytest.raises(BundleError, match="not about invoice INV-1") as caught:
        _verify(log, document)
    assert caught.value.seq == 2
    # Without a target in the query, any entry of the log may be exported.
    anything = _bundle(log, entries=log.entries([1, 2], size), about={**ABOUT, "query": {}})
    assert [e["seq"] for e in _verify(log, anything).events] == [1, 2]


def test_an_entry_whose_leaf_names_another_seq_or_lies_outside_the_tree_is_refused(
    log: Log,
) -> None:
    size = log.store.tree_size(log.opened.info.log_id)
    (real,) = log.entries([1], size)
    (other,) = log.entries([2], size)
    # Leaf 2's bytes with leaf 2's proof, labelled seq 1: the proof is for index 2.
    lying = BundleEntry(1, other.leaf, other.proof)
    with pytest.raises(ProofError):
        _verify(log, _bundle(log, entries=[lying], about={**ABOUT, "query": {}}))
    outside = BundleEntry(size, real.leaf, real.proof)
    with pytest.raises(BundleError, match="outside the checkpoint's tree") as caught:
        _verify(log, _bundle(log, entries=[outside], about={**ABOUT, "query": {}}))
    assert caught.value.seq == size


def test_entries_changed_after_signing_are_refused_by_the_digest(log: Log) -> None:
    document = _bundle(log)
    document["entries"][0]["note"] = "added later"
    with pytest.raises(BundleError, match="entries differ"):
        _verify(log, document)


def test_the_manifest_must_name_the_checkpoint_fields(log: Log) -> None:
    document = _bundle(log)
    manifest = _manifest(document)
    manifest["tree_size"] = "30"
    text = f"{BUNDLE_FORMAT}\n{canonical(manifest).decode()}\n"
    with pytest.raises(BundleError, match="'tree_size' must be a int"):
        _verify(log, _resigned(log, document, text))


def test_a_leaf_that_names_another_seq_than_its_place_in_the_tree_is_refused(log: Log) -> None:
    # A one-leaf tree whose only leaf says it is seq 5: proved in place, but not what it says.
    row = log.store.get_entry(log.opened.info.log_id, 5)
    cp = Checkpoint("example.com/acme", 1, merkle.leaf_hash(row.leaf))
    note = sign_checkpoint(cp, log.signer)
    entry = BundleEntry(0, row.leaf, ())
    document = json.loads(
        build_bundle(
            signer=log.signer,
            checkpoint=note,
            cosignatures=[],
            timestamps=[],
            entries=[entry],
            about={**ABOUT, "query": {}},
        )
    )
    with pytest.raises(BundleError, match="the leaf says seq 5") as caught:
        verify_bundle(canonical(document), log.verifier)
    assert caught.value.seq == 0
