"""Evidence through the command line and a real server: export a record's bundle, verify it
offline with nothing but the log's key (and the TSA roots one trusts), see every tampering
rejected with its reason, and catch a log rolled back to an old backup or forked."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from indelible.core.cosignature import parse_cosigner_vkey, verify_cosignature
from indelible.core.encoding import canonical
from indelible.core.entry import decode
from indelible.core.note import parse_note
from indelible.storage.sqlite import SQLiteStore
from tests.conftest import CliResult, run_cli
from tests.factories import billing_event
from tests.net import free_port
from tests.server.test_live import Server, bearer
from tests.tsa import TSA


def events(start: int, count: int) -> bytes:
    """Invoice events; INV-1 is the target of every tenth, and related to one more."""
    out = []
    for n in range(start, start + count):
        extra: dict[str, Any] = {"target": {"type": "invoice", "id": f"INV-{n % 10}"}}
        if n == start + 3:
            extra["related"] = [{"type": "invoice", "id": "INV-1"}]
        out.append(billing_event(n, personal=n % 10 == 1, **extra))
    return json.dumps(out).encode()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    assert run_cli("init", "--data", str(path), "--origin", "example.com/acme").code == 0
    assert run_cli("append", "-", "--data", str(path), stdin=events(0, 40)).code == 0
    return path


def vkey(data: Path) -> str:
    """The log's verification key, as published when the log was created."""
    store = SQLiteStore(data / "indelible.db")
    try:
        return store.list_logs()[0].vkey
    finally:
        store.close()


def export(data: Path, out: Path, *extra: str) -> CliResult:
    return run_cli(
        "export",
        "--data",
        str(data),
        "--target-type",
        "invoice",
        "--target-id",
        "INV-1",
        "--reason",
        "dispute 2026-114",
        "--out",
        str(out),
        "--json",
        *extra,
    )


def verify_bundle(path: Path, key: str, *extra: str) -> CliResult:
    return run_cli("verify-bundle", str(path), "--vkey", key, "--json", *extra)


def test_an_exported_bundle_verifies_offline_and_the_export_is_an_audit_event(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "INV-1.json"
    result = export(data, out)
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["entries"] == 5 and summary["not_yet_covered"] == 0  # 1, 11, 21, 31 and 3
    checked = verify_bundle(out, vkey(data))
    assert checked.code == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["ok"] is True and report["entries"] == 5
    assert report["manifest"]["reason"] == "dispute 2026-114"
    assert report["manifest"]["seqs"] == [1, 3, 11, 21, 31]
    store = SQLiteStore(data / "indelible.db")
    try:
        log_id = store.list_logs()[0].log_id
        exported = decode(store.get_entry(log_id, summary["audit_seq"]).leaf).event
        latest = store.latest_checkpoint(log_id)
    finally:
        store.close()
    assert exported["event_type"] == "audit.exported"
    assert exported["target"] == {"type": "invoice", "id": "INV-1"}
    assert exported["data"]["sha256"] == summary["sha256"]
    assert latest is not None and latest.size == summary["audit_seq"] + 1  # published too


def _edited(bundle: dict[str, Any]) -> None:
    entry = bundle["entries"][2]
    leaf = base64.b64decode(entry["leaf"]).replace(b'"open"', b'"paid"', 1)
    entry["leaf"] = base64.b64encode(leaf).decode()


def _dropped(bundle: dict[str, Any]) -> None:
    del bundle["entries"][1]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_edited, "seq 11: inclusion proof leads to a different root"),
        (_dropped, "seq 3: the entry the manifest lists is missing"),
    ],
)
def test_an_edited_or_dropped_event_is_rejected_naming_the_seq(
    data: Path, tmp_path: Path, tamper: Any, reason: str
) -> None:
    out = tmp_path / "bundle.json"
    assert export(data, out).code == 0
    bundle = json.loads(out.read_bytes())
    tamper(bundle)
    out.write_bytes(canonical(bundle))
    result = verify_bundle(out, vkey(data))
    assert result.code == 1
    assert reason in json.loads(result.stdout)["error"]["message"]


def test_a_swapped_checkpoint_is_rejected(data: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert export(data, first).code == 0
    assert run_cli("append", "-", "--data", str(data), stdin=events(40, 5)).code == 0
    assert export(data, second).code == 0
    bundle = json.loads(first.read_bytes())
    bundle["checkpoint"] = json.loads(second.read_bytes())["checkpoint"]  # validly signed
    first.write_bytes(canonical(bundle))
    result = verify_bundle(first, vkey(data))
    assert result.code == 1
    assert "not the one the manifest names" in json.loads(result.stdout)["error"]["message"]


def test_timestamps_verify_against_the_trusted_ca_and_a_foreign_one_is_rejected(
    data: Path, tmp_path: Path, tsa: TSA, foreign_tsa: TSA, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, foreign = tmp_path / "ours.pem", tmp_path / "foreign.pem"
    ours.write_bytes(tsa.ca_pem)
    foreign.write_bytes(foreign_tsa.ca_pem)
    monkeypatch.setenv("INDELIBLE_TSA_URLS", tsa.url)
    monkeypatch.setenv("INDELIBLE_TSA_CA", str(ours))
    out = tmp_path / "stamped.json"
    result = export(data, out)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["timestamps"] == 1  # asked for at export time
    key = vkey(data)
    good = verify_bundle(out, key, "--tsa-ca", str(ours))
    assert good.code == 0, good.stdout
    (stamp,) = json.loads(good.stdout)["timestamps"]
    assert stamp["checked"] is True and "test TSA" in stamp["tsa"]
    unchecked = verify_bundle(out, key)
    assert json.loads(unchecked.stdout)["timestamps"][0]["checked"] is False
    wrong_root = verify_bundle(out, key, "--tsa-ca", str(foreign))
    assert wrong_root.code == 1
    assert "trusted root" in json.loads(wrong_root.stdout)["error"]["message"]
    # A log that stamps with an authority the verifier does not trust: its token (properly
    # listed in the signed manifest) is rejected for its chain, naming the authority.
    monkeypatch.setenv("INDELIBLE_TSA_URLS", foreign_tsa.url)
    monkeypatch.setenv("INDELIBLE_TSA_CA", str(foreign))
    assert run_cli("append", "-", "--data", str(data), stdin=events(40, 1)).code == 0
    elsewhere = tmp_path / "elsewhere.json"
    assert export(data, elsewhere).code == 0
    refused = verify_bundle(elsewhere, key, "--tsa-ca", str(ours))
    assert refused.code == 1
    message = json.loads(refused.stdout)["error"]["message"]
    assert foreign_tsa.url in message and "trusted root" in message
    # And a token swapped into a bundle is not one the manifest names.
    bundle = json.loads(out.read_bytes())
    bundle["timestamps"] = json.loads(elsewhere.read_bytes())["timestamps"]
    out.write_bytes(canonical(bundle))
    swapped = verify_bundle(out, key, "--tsa-ca", str(ours), "--tsa-ca", str(foreign))
    assert swapped.code == 1
    assert "timestamp tokens differ" in json.loads(swapped.stdout)["error"]["message"]


def test_export_refuses_an_empty_reason_and_a_bad_time(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    blank = run_cli(
        "export", "--data", str(data), "--target-type", "invoice", "--target-id", "INV-1",
        "--reason", "  ", "--out", str(out),
    )  # fmt: skip
    assert blank.code == 2 and "--reason" in blank.stderr
    assert export(data, out, "--since", "yesterday").code == 2
    assert not out.exists()


# ---- a real server: export over HTTP, verify --remote, rollback and fork


def _post(server: Server, token: str, body: bytes) -> None:
    answer = httpx.post(
        f"{server.base}/v1/events",
        content=body,
        headers={**bearer(token), "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text


def _checkpoint_of(server: Server, token: str, size: int) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = httpx.get(f"{server.base}/v1/checkpoint", headers=bearer(token), timeout=5)
        if answer.status_code == 200 and int(answer.text.split("\n")[1]) >= size:
            return answer.text
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of size {size} was published")


def _size(server: Server, token: str) -> int:
    tenants = httpx.get(f"{server.base}/v1/tenants", headers=bearer(token), timeout=5).json()
    return int(tenants["tenants"][0]["size"])


def _verify_remote(server: Server, token: str, held: Path, key: str) -> CliResult:
    return run_cli(
        "verify", "--remote", server.base, "--checkpoint", str(held), "--vkey", key,
        "--token", token, "--json",
    )  # fmt: skip


def test_a_rolled_back_or_forked_log_is_caught_by_a_client_holding_a_newer_checkpoint(
    tmp_path: Path,
) -> None:
    data, backup = tmp_path / "data", tmp_path / "backup"
    server = Server(data)
    token = server.admin_key()
    assert token is not None
    try:
        _post(server, token, events(0, 20))
        _checkpoint_of(server, token, _size(server, token))
    finally:
        server.stop()
    shutil.copytree(data, backup)  # a backup of the whole data directory, store and keys
    server = Server(data)
    try:
        _post(server, token, events(20, 20))
        held = tmp_path / "held.txt"
        held.write_text(_checkpoint_of(server, token, _size(server, token)))
        key = httpx.get(f"{server.base}/.well-known/indelible/default/vkey").text.strip()
        ok = _verify_remote(server, token, held, key)
        assert ok.code == 0, ok.stdout
        # An evidence bundle over HTTP verifies offline too.
        exported = run_cli(
            "export", "--url", server.base, "--token", token, "--target-type", "invoice",
            "--target-id", "INV-1", "--reason", "remote", "--out", str(tmp_path / "r.json"),
            "--json",
        )  # fmt: skip
        assert exported.code == 0, exported.stdout + exported.stderr
        assert verify_bundle(tmp_path / "r.json", key).code == 0
    finally:
        server.stop()
    shutil.rmtree(data)
    shutil.copytree(backup, data)  # the operator restores the old backup
    server = Server(data)
    try:
        rolled_back = _verify_remote(server, token, held, key)
        assert rolled_back.code == 1
        assert "rolled back" in json.loads(rolled_back.stdout)["error"]["message"]
        # It grows again past the held size, with other events: a fork, not an extension.
        _post(server, token, events(100, 40))
        _checkpoint_of(server, token, int(held.read_text().split("\n")[1]) + 1)
        forked = _verify_remote(server, token, held, key)
        assert forked.code == 1
        assert "does not extend" in json.loads(forked.stdout)["error"]["message"]
    finally:
        server.stop()


def test_a_server_configured_with_a_witness_publishes_cosigned_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, witness_dir = tmp_path / "data", tmp_path / "witness"
    made = run_cli("init", "--data", str(data), "--origin", "example.com/acme", "--json")
    log_vkey = json.loads(made.stdout)["vkey"]
    created = run_cli(
        "witness", "init", "--data", str(witness_dir), "--name", "w.example/1", "--json"
    )
    witness_vkey = json.loads(created.stdout)["vkey"]
    trusted = run_cli("witness", "add-log", "--data", str(witness_dir), "--vkey", log_vkey)
    assert trusted.code == 0, trusted.stderr
    port = free_port()
    witness = subprocess.Popen(
        [sys.executable, "-m", "indelible.cli", "witness", "serve", "--data", str(witness_dir),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        monkeypatch.setenv("INDELIBLE_WITNESSES", f"http://127.0.0.1:{port} {witness_vkey}")
        monkeypatch.setenv("INDELIBLE_WITNESS_QUORUM", "1")
        _wait_for_port(port, witness)
        server = Server(data)
        token = server.admin_key()
        assert token is not None
        try:
            _post(server, token, events(0, 10))
            note = _checkpoint_of(server, token, 10)
            assert len(parse_note(note).signatures) == 2, note  # the log's and the witness's
            body = parse_note(note).text
            verify_cosignature(
                body, note.splitlines(keepends=True)[-1], parse_cosigner_vkey(witness_vkey)
            )
            tlog = httpx.get(f"{server.base}/tlog/default/checkpoint", headers=bearer(token))
            assert tlog.text == note
            anchors = httpx.get(f"{server.base}/v1/anchors", headers=bearer(token)).json()
            assert [a["kind"] for a in anchors["anchors"]] == ["cosignature"]
        finally:
            server.stop()
    finally:
        witness.terminate()
        witness.communicate(timeout=10)
    listed = run_cli("anchors", "--data", str(data), "--json")
    rows = json.loads(listed.stdout)["anchors"]
    assert rows and {row["kind"] for row in rows} == {"cosignature"}
    assert all(row["authority"] == parse_cosigner_vkey(witness_vkey).key_id for row in rows)


def _wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the witness never listened")
