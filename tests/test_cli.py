"""The command line, in process, as a user runs it."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
import typer

from indelible.cli import app as cli_app
from indelible.config import SETTINGS
from indelible.core import merkle
from indelible.core.checkpoint import open_checkpoint
from indelible.core.note import parse_vkey
from tests.conftest import run_cli
from tests.factories import billing_event

ROOT = Path(__file__).resolve().parent.parent


def init(data: Path) -> dict[str, str]:
    result = run_cli("init", "--data", str(data), "--origin", "example.com/cli", "--json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def test_init_creates_a_private_key_and_prints_the_vkey(data_dir: Path) -> None:
    created = init(data_dir)
    key = data_dir / "keys" / "default.skey"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert created["vkey"].startswith("example.com/cli+")
    assert parse_vkey(created["vkey"]).name == "example.com/cli"
    again = run_cli("init", "--data", str(data_dir), "--origin", "example.com/cli")
    assert again.code != 0 and "refusing to overwrite" in again.stderr


def test_append_accepts_object_array_and_ndjson_from_files_and_stdin(data_dir: Path) -> None:
    vkey = init(data_dir)["vkey"]
    one = data_dir.parent / "one.json"
    one.write_text(json.dumps(billing_event(0)))
    assert run_cli("append", str(one), "--data", str(data_dir)).code == 0
    array = json.dumps([billing_event(1), billing_event(2)]).encode()
    result = run_cli("append", "-", "--data", str(data_dir), "--json", stdin=array)
    body = json.loads(result.stdout)
    assert [r["seq"] for r in body["receipts"]] == [1, 2]
    ndjson = "\n".join(json.dumps(billing_event(n)) for n in range(3, 6)).encode()
    body = json.loads(
        run_cli("append", "-", "--data", str(data_dir), "--json", stdin=ndjson).stdout
    )
    assert [r["seq"] for r in body["receipts"]] == [3, 4, 5]
    checkpoint, _ = open_checkpoint(body["checkpoint"], parse_vkey(vkey), "example.com/cli")
    assert checkpoint.size == 6


def test_invalid_events_are_reported_by_index_and_nothing_is_appended(data_dir: Path) -> None:
    init(data_dir)
    bad = [billing_event(0), billing_event(1, outcome="maybe"), billing_event(2, event_id="x")]
    result = run_cli(
        "append", "-", "--data", str(data_dir), "--json", stdin=json.dumps(bad).encode()
    )
    assert result.code == 2
    errors = json.loads(result.stdout)["error"]["details"]["errors"]
    assert {(e["index"], e["field"]) for e in errors} == {(1, "/outcome"), (2, "/event_id")}
    human = run_cli("append", "-", "--data", str(data_dir), stdin=json.dumps(bad).encode())
    assert "item 1 /outcome" in human.stderr
    status = run_cli("verify", "--data", str(data_dir), "--json")
    assert json.loads(status.stdout)["size"] == 0


def test_malformed_json_is_refused_with_exit_2(data_dir: Path) -> None:
    init(data_dir)
    for raw in (b'{"a": 1, "a": 2}', b'{"x": NaN}', b"[1, 2", b"\xff\xfe"):
        result = run_cli("append", "-", "--data", str(data_dir), "--json", stdin=raw)
        assert result.code == 2, raw
        assert json.loads(result.stdout)["error"]["code"] == "malformed_json"


def test_proofs_verify_against_the_printed_checkpoint(data_dir: Path) -> None:
    vkey = parse_vkey(init(data_dir)["vkey"])
    events = data_dir.parent / "events.json"
    events.write_text(json.dumps([billing_event(n) for n in range(37)]))
    run_cli("append", str(events), "--data", str(data_dir))
    note = json.loads(run_cli("checkpoint", "--data", str(data_dir), "--json").stdout)["note"]
    checkpoint, _ = open_checkpoint(note, vkey, "example.com/cli")
    proof = json.loads(
        run_cli("proof", "inclusion", "11", "--data", str(data_dir), "--json").stdout
    )
    assert proof["tree_size"] == 37 and proof["checkpoint"] == note
    merkle.verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        11,
        37,
        [bytes.fromhex(h) for h in proof["proof"]],
        checkpoint.root,
    )
    consistency = json.loads(
        run_cli("proof", "consistency", "5", "37", "--data", str(data_dir), "--json").stdout
    )
    merkle.verify_consistency(
        5,
        37,
        bytes.fromhex(consistency["old_root"]),
        checkpoint.root,
        [bytes.fromhex(h) for h in consistency["proof"]],
    )
    assert run_cli("proof", "inclusion", "37", "--data", str(data_dir)).code == 2


def test_verify_with_a_pinned_foreign_key_fails(data_dir: Path) -> None:
    init(data_dir)
    run_cli("append", "-", "--data", str(data_dir), stdin=json.dumps(billing_event(0)).encode())
    other = run_cli(
        "init", "--data", str(data_dir.parent / "other"), "--origin", "example.com/cli", "--json"
    )
    foreign = json.loads(other.stdout)["vkey"]
    result = run_cli("verify", "--data", str(data_dir), "--vkey", foreign, "--json")
    assert result.code == 1
    assert json.loads(result.stdout)["error"]["code"] == "invalid_signature"


def test_commands_on_a_missing_store_say_so(tmp_path: Path) -> None:
    result = run_cli("verify", "--data", str(tmp_path / "nowhere"))
    assert result.code == 2 and "indelible init" in result.stderr


def test_serve_on_a_missing_store_says_so_before_listening(tmp_path: Path) -> None:
    result = run_cli("serve", "--data", str(tmp_path / "nowhere"), "--port", "8799")
    assert result.code == 2 and "indelible init" in result.stderr


def test_a_bad_port_is_refused_naming_the_setting(tmp_path: Path) -> None:
    result = run_cli("run", "--data", str(tmp_path / "data"), "--port", "70000")
    assert result.code == 2 and "port:" in result.stderr
    assert not (tmp_path / "data").exists(), "nothing is created before settings are valid"


def test_every_setting_and_command_is_documented() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in operations, f"setting {setting.name} is undocumented"
    cli_doc = (ROOT / "docs" / "cli.md").read_text()
    documented = re.findall(r"`indelible ([a-z-]+(?: [a-z-]+)?)", cli_doc)
    documented += re.findall(r"/ `([a-z-]+ [a-z-]+)", cli_doc)  # "… / `witness serve …`"
    for command in _commands(cli_app):
        assert any(c.startswith(command) for c in documented), f"{command} is undocumented"


def _commands(app: typer.Typer, prefix: str = "") -> list[str]:
    """Every command of the real CLI, sub-commands as ``group command``."""
    names = [prefix + (c.name or c.callback.__name__) for c in app.registered_commands]
    for group in app.registered_groups:
        assert group.typer_instance is not None and group.name is not None
        names += _commands(group.typer_instance, f"{prefix}{group.name} ")
    return names


def test_bad_anchoring_settings_stop_the_server_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    assert run_cli("init", "--data", str(data)).code == 0
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ({"INDELIBLE_TSA_URLS": "https://tsa.example/"}, "tsa_ca:"),
        ({"INDELIBLE_TSA_URLS": "ftp://tsa.example/"}, "tsa_urls:"),
        ({"INDELIBLE_TSA_CA": str(tmp_path / "missing.pem")}, "tsa_ca:"),
        ({"INDELIBLE_TSA_CA": str(garbage)}, "tsa_ca:"),
        ({"INDELIBLE_WITNESSES": "https://w.example/ not-a-vkey"}, "witnesses:"),
        ({"INDELIBLE_WITNESS_QUORUM": "2"}, "witness_quorum:"),
        ({"INDELIBLE_PUBLIC_TLOG": "maybe"}, "public_tlog:"),
    ]
    for environment, named in cases:
        with monkeypatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            result = run_cli("serve", "--data", str(data), "--port", "8799")
        assert result.code == 2 and named in result.stderr, (environment, result.stderr)
