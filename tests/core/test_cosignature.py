"""C2SP tlog-cosignature and tlog-witness bodies: public vectors, strict parsing, round trips."""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from indelible import errors
from indelible.core import note as notes
from indelible.core.checkpoint import Checkpoint, format_checkpoint, sign_checkpoint
from indelible.core.cosignature import (
    MAX_ADD_CHECKPOINT_BYTES,
    MAX_PROOF_LINES,
    MAX_TIMESTAMP,
    AddCheckpoint,
    Cosignature,
    CosignatureSigner,
    CosignatureVerifier,
    cosign,
    cosignature_message,
    cosigned_by,
    cosigner_key_hash,
    format_add_checkpoint,
    format_cosignature,
    format_cosigner_skey,
    format_cosigner_vkey,
    generate_cosigner,
    parse_add_checkpoint,
    parse_cosignature,
    parse_cosigner_skey,
    parse_cosigner_vkey,
    verify_cosignature,
)
from tests.vectors import load_vectors

VECTORS: dict[str, Any] = load_vectors("cosignature.json")
DASH = "\u2014"
LOG = notes.generate_signer("example.com/log", bytes(range(32)))
W1 = generate_cosigner("witness.example/w1", bytes([1]) * 32)
W2 = generate_cosigner("witness.example/w2", bytes([2]) * 32)
W3 = generate_cosigner("witness.example/w3", bytes([3]) * 32)
BODY = format_checkpoint(Checkpoint("example.com/log", 5, hashlib.sha256(b"five").digest()))
NOTE = sign_checkpoint(Checkpoint("example.com/log", 5, hashlib.sha256(b"five").digest()), LOG)


def flip_bit(line: str, byte: int) -> str:
    """The signature line with one bit of its decoded payload flipped."""
    name, payload = line[2:-1].split(" ")
    raw = bytearray(base64.b64decode(payload))
    raw[byte] ^= 0x01
    return f"{DASH} {name} {base64.b64encode(bytes(raw)).decode()}\n"


# ---------------------------------------------------------------------------------------------
# Public vectors


def test_signed_message_is_the_spec_example() -> None:
    case = VECTORS["signed_message"]
    assert cosignature_message(case["body"], case["time"]) == case["message"].encode()


def test_a_real_witness_cosignature_verifies() -> None:
    """A staging CT checkpoint cosigned by a live witness (remora.n621.de)."""
    case = VECTORS["real_cosigned_checkpoint"]
    opened = notes.open_note(case["note"], [notes.parse_vkey(case["log_vkey"])])
    verifier = parse_cosigner_vkey(case["cosigner_vkey"])
    lines = case["note"][len(opened.text) + 1 :].splitlines(keepends=True)
    assert [line for line in lines if line.startswith(f"{DASH} remora.n621.de ")]
    found = cosigned_by(opened.text, lines, [verifier])
    assert list(found) == [verifier.key_id]
    # the same cosignature over the same checkpoint with another size does not verify
    other = opened.text.replace("1432088532", "1432088533")
    assert cosigned_by(other, lines, [verifier]) == {}


def test_the_spec_cosigned_checkpoint_parses() -> None:
    case = VECTORS["spec_cosigned_checkpoint"]
    note = notes.parse_note(case["note"])
    line = format_cosignature_line(note.signatures[-1])
    cosig = parse_cosignature(line)
    assert cosig.name == case["cosigner"]
    assert cosig.timestamp == VECTORS["signed_message"]["time"]
    assert format_cosignature(cosig) == line


def format_cosignature_line(sig: notes.NoteSignature) -> str:
    return f"{DASH} {sig.name} {base64.b64encode(sig.key_hash + sig.signature).decode()}\n"


@pytest.mark.parametrize(
    "case", VECTORS["cosigner_vkeys"], ids=lambda c: c["desc"].replace(" ", "-")
)
def test_cosigner_vkey_vectors(case: dict[str, Any]) -> None:
    if case["valid"]:
        verifier = parse_cosigner_vkey(case["vkey"])
        assert format_cosigner_vkey(verifier) == case["vkey"]
    else:
        with pytest.raises(errors.FormatError):
            parse_cosigner_vkey(case["vkey"])


@pytest.mark.parametrize("case", VECTORS["timestamps"], ids=lambda c: c["desc"].replace(" ", "-"))
def test_timestamp_vectors(case: dict[str, Any]) -> None:
    line = f"{DASH} witness.example {case['payload']}\n"
    if case["timestamp"] is None:
        with pytest.raises(errors.FormatError):
            parse_cosignature(line)
    else:
        assert parse_cosignature(line).timestamp == case["timestamp"]


def test_the_spec_add_checkpoint_request_round_trips() -> None:
    case = VECTORS["add_checkpoint_request"]
    body = case["body"].encode()
    request = parse_add_checkpoint(body)
    assert request.old_size == case["old_size"]
    assert len(request.proof) == case["proof_lines"]
    assert format_add_checkpoint(*request) == body


def test_the_spec_add_checkpoint_response_is_signature_lines() -> None:
    """The spec's example answer: signed-note lines of cosignature size, placeholder bytes."""
    case = VECTORS["add_checkpoint_response"]
    lines = case["body"].splitlines(keepends=True)
    parsed = notes.parse_note("x\n\n" + case["body"])
    assert [sig.name for sig in parsed.signatures] == case["names"]
    assert all(len(sig.key_hash + sig.signature) == 76 for sig in parsed.signatures)
    for line, in_range in zip(lines, case["timestamp_in_range"], strict=True):
        if in_range:
            assert format_cosignature(parse_cosignature(line)) == line
        else:  # a timestamp MUST NOT exceed 2^63 - 1
            with pytest.raises(errors.FormatError, match="2\\^63"):
                parse_cosignature(line)


# ---------------------------------------------------------------------------------------------
# Keys


def test_key_hash_is_sha256_of_name_newline_0x04_key() -> None:
    public = W1.verifier().public_key
    expected = hashlib.sha256(b"witness.example/w1\n\x04" + public).digest()[:4]
    assert W1.key_hash == expected == cosigner_key_hash(W1.name, public)
    # not the plain Ed25519 (0x01) key hash of the same key
    assert W1.key_hash != notes.generate_signer(W1.name, bytes([1]) * 32).key_hash


def test_vkey_and_skey_round_trip() -> None:
    vkey = format_cosigner_vkey(W1.verifier())
    assert vkey.startswith(f"witness.example/w1+{W1.key_hash.hex()}+B")  # base64 of 0x04 ...
    assert parse_cosigner_vkey(vkey) == W1.verifier()
    skey = format_cosigner_skey(W1)
    assert parse_cosigner_skey(skey) == W1
    assert format_cosigner_skey(parse_cosigner_skey(skey)) == skey
    assert W1.verifier().key_id == f"witness.example/w1+{W1.key_hash.hex()}"


def test_a_plain_ed25519_vkey_is_not_a_cosigner_vkey() -> None:
    with pytest.raises(errors.FormatError, match="0x01"):
        parse_cosigner_vkey(notes.format_vkey(LOG.verifier()))
    with pytest.raises(errors.FormatError):
        notes.parse_vkey(format_cosigner_vkey(W1.verifier()))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("w+00000000", "expected"),
        ("bad name+00000000+BA==", "white space"),
        ("w+0000000G+BA==", "8 lowercase hex"),
        ("w+00000000+", "key is empty"),
        ("w+00000000+BAAA", "32 bytes"),
        ("w+00000000+" + base64.b64encode(b"\x04" + bytes(32)).decode(), "does not match"),
        ("w+00000000+BA=", "not valid base64"),
        ("w+00000000+BB==", "canonical"),
        ("w+00000000+BAé=", "not valid base64"),
    ],
)
def test_bad_vkeys(text: str, match: str) -> None:
    with pytest.raises(errors.FormatError, match=match):
        parse_cosigner_vkey(text)


def test_bad_skeys_never_echo_the_key() -> None:
    skey = format_cosigner_skey(W1)
    with pytest.raises(errors.FormatError, match="PRIVATE") as info:
        parse_cosigner_skey(skey[len("PRIVATE+KEY+") :])
    assert skey not in info.value.message
    wrong = skey.replace(W1.key_hash.hex(), W2.key_hash.hex())
    with pytest.raises(errors.FormatError, match="does not match") as info:
        parse_cosigner_skey(wrong)
    assert skey.rsplit("+", 1)[1] not in info.value.message


def test_key_objects_check_themselves() -> None:
    public = W1.verifier().public_key
    with pytest.raises(errors.FormatError, match="32 bytes"):
        CosignatureVerifier("w", b"\0" * 4, public[:31])
    with pytest.raises(errors.FormatError, match="does not match"):
        CosignatureVerifier("w", b"\0" * 4, public)
    with pytest.raises(errors.FormatError, match="32 bytes"):
        CosignatureSigner("w", b"\0" * 4, b"\0" * 31)
    with pytest.raises(errors.FormatError, match="does not match"):
        CosignatureSigner("w", b"\0" * 4, b"\0" * 32)
    with pytest.raises(errors.FormatError, match="32 bytes"):
        generate_cosigner("w", b"\0" * 31)
    with pytest.raises(errors.FormatError):
        generate_cosigner("w+1", b"\0" * 32)
    assert "seed" not in repr(W1).replace("key_hash", "")


# ---------------------------------------------------------------------------------------------
# Cosigning and verifying


def test_cosignature_matches_a_reference_construction() -> None:
    """Rebuild the line by hand from the spec's words, with the raw Ed25519 primitive."""
    line = cosign(BODY, W1, 1_700_000_000)
    message = b"cosignature/v1\ntime 1700000000\n" + BODY.encode()
    signature = Ed25519PrivateKey.from_private_bytes(W1.seed).sign(message)
    payload = W1.key_hash + struct.pack(">Q", 1_700_000_000) + signature
    assert line == f"{DASH} witness.example/w1 {base64.b64encode(payload).decode()}\n"
    assert verify_cosignature(BODY, line, W1.verifier()) == 1_700_000_000


def test_the_cosignature_opens_as_a_signed_note_signature() -> None:
    """The witness's answer appended to the log's note is one valid signed note."""
    cosigned = NOTE + cosign(BODY, W1, 42)
    parsed = notes.parse_note(cosigned)
    assert [s.name for s in parsed.signatures] == ["example.com/log", "witness.example/w1"]
    assert notes.open_note(cosigned, [LOG.verifier()]).text == BODY


@pytest.mark.parametrize("byte", [0, 3, 4, 11, 12, 75])
def test_one_flipped_bit_fails(byte: int) -> None:
    line = flip_bit(cosign(BODY, W1, 1_700_000_000), byte)
    with pytest.raises(errors.SignatureError):
        verify_cosignature(BODY, line, W1.verifier())


def test_verification_refusals() -> None:
    line = cosign(BODY, W1, 100)
    with pytest.raises(errors.SignatureError, match="another key") as info:
        verify_cosignature(BODY, line, W2.verifier())
    assert info.value.expected == W2.verifier().key_id
    with pytest.raises(errors.SignatureError, match="invalid cosignature"):
        verify_cosignature(BODY.replace("\n5\n", "\n6\n"), line, W1.verifier())
    with pytest.raises(errors.SignatureError, match="future"):
        verify_cosignature(BODY, line, W1.verifier(), not_after=99)
    assert verify_cosignature(BODY, line, W1.verifier(), not_after=100) == 100
    with pytest.raises(errors.FormatError):
        verify_cosignature("not a checkpoint\n", line, W1.verifier())


def test_extension_lines_are_covered() -> None:
    body = BODY + "extension\n"
    line = cosign(body, W1, 7)
    assert verify_cosignature(body, line, W1.verifier()) == 7
    with pytest.raises(errors.SignatureError):
        verify_cosignature(BODY + "extensioN\n", line, W1.verifier())


@pytest.mark.parametrize("time_s", [-1, MAX_TIMESTAMP + 1, True])
def test_timestamps_out_of_range(time_s: int) -> None:
    with pytest.raises(errors.FormatError, match="timestamp"):
        cosign(BODY, W1, time_s)


def test_the_largest_timestamp_round_trips() -> None:
    line = cosign(BODY, W1, MAX_TIMESTAMP)
    assert verify_cosignature(BODY, line, W1.verifier()) == MAX_TIMESTAMP


def test_a_timestamp_past_2_63_is_refused_when_parsed() -> None:
    raw = W1.key_hash + (1 << 63).to_bytes(8, "big") + bytes(64)
    with pytest.raises(errors.FormatError, match="timestamp"):
        parse_cosignature(f"{DASH} w {base64.b64encode(raw).decode()}\n")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("- w AAAA\n", "em dash"),
        (f"{DASH} w AAAA", "em dash"),
        (f"{DASH} wAAAA\n", "'— <key name> <signature>'"),
        (f"{DASH} w AAAA\n", "not 76"),
        (f"{DASH} w+x AAAA\n", r"'\+'"),
        (f"{DASH} w AAA\n", "not valid base64"),
    ],
)
def test_bad_cosignature_lines(line: str, match: str) -> None:
    with pytest.raises(errors.FormatError, match=match):
        parse_cosignature(line)


def test_format_cosignature_checks_its_fields() -> None:
    with pytest.raises(errors.FormatError, match="4-byte"):
        format_cosignature(Cosignature("w", b"\0" * 3, 0, b"\0" * 64))
    with pytest.raises(errors.FormatError, match="4-byte"):
        format_cosignature(Cosignature("w", b"\0" * 4, 0, b"\0" * 63))
    with pytest.raises(errors.FormatError):
        format_cosignature(Cosignature("", b"\0" * 4, 0, b"\0" * 64))
    assert Cosignature("w", b"\x01\x02\x03\x04", 0, b"").key_id == "w+01020304"


@given(st.integers(min_value=0, max_value=MAX_TIMESTAMP), st.binary(min_size=64, max_size=64))
def test_cosignature_lines_round_trip(timestamp: int, signature: bytes) -> None:
    cosig = Cosignature("witness.example/w1", W1.key_hash, timestamp, signature)
    line = format_cosignature(cosig)
    assert parse_cosignature(line) == cosig
    assert format_cosignature(parse_cosignature(line)) == line


# ---------------------------------------------------------------------------------------------
# k of n


def test_cosigned_by_counts_distinct_valid_known_keys() -> None:
    lines = [
        cosign(BODY, W1, 10),
        cosign(BODY, W1, 11),  # a second line by the same witness counts once
        flip_bit(cosign(BODY, W2, 12), 40),  # invalid
        cosign(BODY, W3, 13),
        cosign(BODY, generate_cosigner("stranger", bytes([9]) * 32), 14),  # unknown
        "not a signature line\n",  # malformed
    ]
    verifiers = [W1.verifier(), W2.verifier(), W3.verifier()]
    assert cosigned_by(BODY, lines, verifiers) == {
        W1.verifier().key_id: 10,
        W3.verifier().key_id: 13,
    }


def test_one_key_under_two_names_counts_once() -> None:
    twin = generate_cosigner("witness.example/twin", W1.seed)
    line = cosign(BODY, W1, 5)
    # the name is not signed: the same signature bytes re-labelled verify for the twin
    cosig = parse_cosignature(line)
    relabelled = format_cosignature(Cosignature(twin.name, twin.key_hash, 5, cosig.signature))
    assert verify_cosignature(BODY, relabelled, twin.verifier()) == 5
    found = cosigned_by(BODY, [line, relabelled], [W1.verifier(), twin.verifier()])
    assert len(found) == 1


# ---------------------------------------------------------------------------------------------
# add-checkpoint bodies

PROOF = (hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest())


def test_add_checkpoint_round_trips() -> None:
    body = format_add_checkpoint(3, PROOF, NOTE)
    lines = body.decode().split("\n")
    assert lines[:4] == [
        "old 3",
        base64.b64encode(PROOF[0]).decode(),
        base64.b64encode(PROOF[1]).decode(),
        "",
    ]
    assert parse_add_checkpoint(body) == AddCheckpoint(3, PROOF, NOTE)
    assert format_add_checkpoint(*parse_add_checkpoint(body)) == body
    empty = format_add_checkpoint(0, [], NOTE)
    assert empty == b"old 0\n\n" + NOTE.encode()
    assert parse_add_checkpoint(empty) == (0, (), NOTE)


@given(
    st.integers(min_value=0, max_value=(1 << 63) - 1),
    st.lists(st.binary(min_size=32, max_size=32), max_size=MAX_PROOF_LINES),
)
def test_add_checkpoint_round_trips_property(old: int, proof: list[bytes]) -> None:
    body = format_add_checkpoint(old, proof, NOTE)
    assert parse_add_checkpoint(body) == (old, tuple(proof), NOTE)
    assert format_add_checkpoint(*parse_add_checkpoint(body)) == body


H = base64.b64encode(PROOF[0]).decode()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"old 1\n" + b"\xff\n\n", "UTF-8"),
        (b"old 1\n" + NOTE.encode().replace(b"\n\n", b"\n"), "no empty line"),
        (b"\n\n" + NOTE.encode(), "'old <decimal size>'"),
        (b"old 01\n\n" + NOTE.encode(), "'old <decimal size>'"),
        (b"old  1\n\n" + NOTE.encode(), "'old <decimal size>'"),
        (b"old -1\n\n" + NOTE.encode(), "'old <decimal size>'"),
        (b"new 1\n\n" + NOTE.encode(), "'old <decimal size>'"),
        (b"old1\n\n" + NOTE.encode(), "'old <decimal size>'"),
        (b"old 9223372036854775808\n\n" + NOTE.encode(), "2\\^63"),
        (f"old 1\n{H[:-1]}\n\n".encode() + NOTE.encode(), "proof line 1"),
        (f"old 1\n{H}\r\n\n".encode() + NOTE.encode(), "proof line 1"),
        (b"old 1\nAAAA\n\n" + NOTE.encode(), "not 32 bytes"),
        (("old 1\n" + f"{H}\n" * 64 + "\n").encode() + NOTE.encode(), "at most 63"),
        (b"old 1\n\nnot a note\n", "blank line"),
    ],
)
def test_bad_add_checkpoint_bodies(body: bytes, match: str) -> None:
    with pytest.raises(errors.FormatError, match=match):
        parse_add_checkpoint(body)


def test_add_checkpoint_limits() -> None:
    assert len(format_add_checkpoint(1, [PROOF[0]] * MAX_PROOF_LINES, NOTE)) < 4096
    with pytest.raises(errors.LimitExceeded):
        parse_add_checkpoint(b"old 1\n\n" + b"x" * MAX_ADD_CHECKPOINT_BYTES)
    with pytest.raises(errors.FormatError, match="at most 63"):
        format_add_checkpoint(1, [PROOF[0]] * 64, NOTE)
    with pytest.raises(errors.FormatError, match="not 32 bytes"):
        format_add_checkpoint(1, [b"short"], NOTE)
    with pytest.raises(errors.FormatError, match="old size"):
        format_add_checkpoint(-1, [], NOTE)
    with pytest.raises(errors.FormatError, match="old size"):
        format_add_checkpoint(True, [], NOTE)
    with pytest.raises(errors.FormatError):
        format_add_checkpoint(1, [], "not a note\n")
    # a note just under its own limit no longer fits with the header
    big_text = "example.com/log\n1\n" + base64.b64encode(bytes(32)).decode() + "\n"
    big_text += ("x" * 1000 + "\n") * 1046
    big = notes.sign_note(big_text, [LOG])
    with pytest.raises(errors.LimitExceeded):
        format_add_checkpoint(1, [PROOF[0]] * 63, big)
