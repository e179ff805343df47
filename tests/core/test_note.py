"""Signed notes and vkey / skey keys: public vectors, strict parsing, openssl, properties."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from indelible import errors
from indelible.core.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    add_signature,
    check_key_name,
    format_note,
    format_skey,
    format_vkey,
    generate_signer,
    open_note,
    parse_note,
    parse_skey,
    parse_vkey,
    sign_note,
)
from tests.vectors import load_vectors

VECTORS: dict[str, Any] = load_vectors("signed-notes.json")
CASES: list[dict[str, Any]] = VECTORS["cases"]
KEYS: dict[str, dict[str, str | None]] = VECTORS["test_keys"]


def _cases(expect: str) -> list[Any]:
    return [pytest.param(c, id=c["id"]) for c in CASES if c["expect"] == expect]


def _skey(name: str) -> Signer:
    skey = KEYS[name]["skey"]
    assert skey is not None
    return parse_skey(skey)


def _vkey(name: str) -> Verifier:
    vkey = KEYS[name]["vkey"]
    assert vkey is not None
    return parse_vkey(vkey)


GO_TEXT = "If you think cryptography is the answer to your problem,\n"
GO_TEXT += "then you don't know what your problem is.\n"
GO_NOTE = next(c["note"] for c in CASES if c["id"] == "gomod-peterneumann")

# How each `invalid` vector must fail: malformed notes are input errors, the rest are
# signature failures (Go's UnverifiedNoteError / InvalidSignatureError).
INVALID_FAILURE: dict[str, tuple[type[errors.IndelibleError], str]] = {
    "gomod-no-known-key": (errors.SignatureError, "unverified note"),
    "gomod-corrupted-signature": (errors.SignatureError, "invalid signature"),
    "gomod-misnamed-signature": (errors.SignatureError, "unverified note"),
    "gomod-wrong-keyhash": (errors.SignatureError, "unverified note"),
    "gomod-malformed-0": (errors.FormatError, "no blank line"),
    "gomod-malformed-1": (errors.FormatError, "no signature lines"),
    "gomod-malformed-2": (errors.FormatError, "end with a signature line"),
    "gomod-malformed-3": (errors.FormatError, "control character U\\+0001"),
    "gomod-malformed-4": (errors.FormatError, "end with a signature line"),
    "gomod-malformed-5": (errors.FormatError, "em dash"),
    "sumdb-checkpoint-wrong-origin": (errors.SignatureError, "another log"),
}


# ---------------------------------------------------------------------------------------------
# Public vectors


@pytest.mark.parametrize("case", _cases("valid"))
def test_valid_vector_opens_with_its_vkeys(case: dict[str, Any]) -> None:
    verifiers = [parse_vkey(vkey) for vkey in case["vkeys"]]
    for data in (case["note"], case["note"].encode("utf-8")):
        note = open_note(data, verifiers)
        assert len(note.signatures) == case.get("verified_sigs", len(verifiers))
        assert {(s.name, s.key_hash) for s in note.signatures} <= {
            (v.name, v.key_hash) for v in verifiers
        }
        if "text" in case:
            assert note.text == case["text"]


def test_every_invalid_vector_has_an_expected_failure() -> None:
    assert {c["id"] for c in CASES if c["expect"] == "invalid"} == set(INVALID_FAILURE)


@pytest.mark.parametrize("case", _cases("invalid"))
def test_invalid_vector_is_rejected_with_the_right_error(case: dict[str, Any]) -> None:
    from indelible.core.checkpoint import open_checkpoint

    family, message = INVALID_FAILURE[case["id"]]
    verifiers = [parse_vkey(vkey) for vkey in case["vkeys"]]
    with pytest.raises(family, match=message):
        if "expected_origin" in case:
            open_checkpoint(case["note"], verifiers[0], case["expected_origin"])
        else:
            open_note(case["note"], verifiers)


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in CASES])
def test_vector_parses_and_round_trips_unless_malformed(case: dict[str, Any]) -> None:
    if case["id"].startswith("gomod-malformed"):
        with pytest.raises(errors.FormatError):
            parse_note(case["note"])
        return
    note = parse_note(case["note"])
    assert format_note(note) == case["note"]
    assert parse_note(format_note(note)) == note


@pytest.mark.parametrize("case", _cases("parse_only"))
def test_parse_only_vector_has_one_unverifiable_signature(case: dict[str, Any]) -> None:
    note = parse_note(case["note"])
    assert len(note.signatures) == 1
    assert len(note.signatures[0].signature) == 64
    with pytest.raises(errors.SignatureError, match="unverified"):
        open_note(case["note"], [_vkey("PeterNeumann")])


def test_c2sp_intro_text_keeps_its_inner_blank_line() -> None:
    case = next(c for c in CASES if c["id"] == "c2sp-signed-note-intro")
    note = parse_note(case["note"])
    assert note.text.split("\n") == [
        "Ognuno sta solo sul cuor della terra",
        "trafitto da un raggio di sole:",
        "",
        "ed è subito sera.",
        "",
    ]
    assert note.signatures[0].name == "quasimodo.example/salvatore"


def test_witness_signatures_are_all_kept_and_unknown_ones_ignored() -> None:
    case = next(c for c in CASES if c["id"] == "sumdb-checkpoint-with-witness-sigs")
    parsed = parse_note(case["note"])
    names = [s.name for s in parsed.signatures]
    assert names == ["sum.golang.org", "monkeys", "bananas", "witness", "random1", "random2"]
    opened = open_note(case["note"], [parse_vkey(v) for v in case["vkeys"]])
    assert [s.name for s in opened.signatures] == names[:4]
    # random1/random2 copy witness's key hash and signature under other names: unknown keys.
    assert parsed.signatures[4].key_hash == parsed.signatures[3].key_hash


@pytest.mark.parametrize("name", sorted(KEYS))
def test_test_key_vkey_round_trips(name: str) -> None:
    vkey = KEYS[name]["vkey"]
    assert vkey is not None
    verifier = parse_vkey(vkey)
    assert verifier.name == name
    assert format_vkey(verifier) == vkey


@pytest.mark.parametrize("name", sorted(n for n, k in KEYS.items() if k["skey"]))
def test_test_key_skey_round_trips_and_derives_its_vkey(name: str) -> None:
    signer = _skey(name)
    assert format_skey(signer) == KEYS[name]["skey"]
    assert format_vkey(signer.verifier()) == KEYS[name]["vkey"]
    assert signer.verifier() == _vkey(name)


def test_signing_the_go_example_reproduces_the_published_note() -> None:
    assert sign_note(GO_TEXT, [_skey("PeterNeumann")]) == GO_NOTE


def test_vkey_with_plus_in_its_base64_parses() -> None:
    vkey = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
    verifier = parse_vkey(vkey)
    assert verifier.name == "sum.golang.org"
    assert verifier.key_hash == bytes.fromhex("033de0ae")
    assert format_vkey(verifier) == vkey


# ---------------------------------------------------------------------------------------------
# Keys: generation and strict parsing

SEED = bytes(range(32))


def test_generated_key_round_trips_through_skey_and_vkey() -> None:
    signer = generate_signer("example.com/log", SEED)
    assert parse_skey(format_skey(signer)) == signer
    assert parse_vkey(format_vkey(signer.verifier())) == signer.verifier()
    assert format_skey(signer).startswith("PRIVATE+KEY+example.com/log+")


def test_signer_repr_hides_the_seed() -> None:
    signer = generate_signer("example.com/log", SEED)
    assert SEED.hex() not in repr(signer)
    assert repr(SEED) not in repr(signer)


def test_key_hash_is_sha256_of_name_newline_type_and_key() -> None:
    import hashlib

    verifier = generate_signer("example.com/log", SEED).verifier()
    expected = hashlib.sha256(b"example.com/log\n\x01" + verifier.public_key).digest()[:4]
    assert verifier.key_hash == expected


GOOD_VKEY = KEYS["PeterNeumann"]["vkey"] or ""
GOOD_KEY_B64 = GOOD_VKEY.split("+", 2)[2]


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        pytest.param("", "expected <name>", id="empty"),
        pytest.param("PeterNeumann", "expected <name>", id="no-plus"),
        pytest.param("PeterNeumann+c74f20a3", "expected <name>", id="no-key"),
        pytest.param("+c74f20a3+" + GOOD_KEY_B64, "key name is empty", id="empty-name"),
        pytest.param("Peter Neumann+c74f20a3+" + GOOD_KEY_B64, "white space", id="space"),
        pytest.param("Peter\u00a0+c74f20a3+" + GOOD_KEY_B64, "white space", id="nbsp"),
        pytest.param("PeterNeumann+C74F20A3+" + GOOD_KEY_B64, "8 lowercase hex", id="upper-hex"),
        pytest.param("PeterNeumann+c74f20a+" + GOOD_KEY_B64, "8 lowercase hex", id="7-hex"),
        pytest.param("PeterNeumann+c74f20ag+" + GOOD_KEY_B64, "8 lowercase hex", id="non-hex"),
        pytest.param("PeterNeumann+c74f20a3+", "key is empty", id="empty-key"),
        pytest.param("PeterNeumann+c74f20a3+AR!c", "not valid base64", id="bad-base64"),
        pytest.param("PeterNeumann+c74f20a3+AR", "not valid base64", id="no-padding"),
        pytest.param("PeterNeumann+c74f20a3+AR==", "not canonical", id="pad-bits"),
        pytest.param("PeterNeumann+c74f20a3+Ag==", "unsupported key type 0x02", id="alg-2"),
        pytest.param("PeterNeumann+c74f20a3+AQID", "32 bytes", id="short-key"),
        pytest.param("PeterNeumann+c74f20a4+" + GOOD_KEY_B64, "does not match", id="hash"),
        pytest.param("PeterNeumanm+c74f20a3+" + GOOD_KEY_B64, "does not match", id="name"),
    ],
)
def test_bad_vkey_is_refused(vkey: str, message: str) -> None:
    with pytest.raises(errors.FormatError, match=message):
        parse_vkey(vkey)


GOOD_SKEY = KEYS["PeterNeumann"]["skey"] or ""
SKEY_B64 = GOOD_SKEY.split("+", 4)[4]


@pytest.mark.parametrize(
    ("skey", "message"),
    [
        pytest.param(GOOD_SKEY[len("PRIVATE+KEY+") :], "PRIVATE\\+KEY", id="no-prefix"),
        pytest.param("private+key+PeterNeumann+c74f20a3+" + SKEY_B64, "PRIVATE", id="case"),
        pytest.param("PRIVATE+KEY+PeterNeumann+c74f20a4+" + SKEY_B64, "does not match", id="hash"),
        pytest.param("PRIVATE+KEY+Peter+c74f20a3+" + SKEY_B64, "does not match", id="name"),
        pytest.param(
            GOOD_VKEY.replace("PeterNeumann", "PRIVATE+KEY+PeterNeumann"), "does not", id="vk"
        ),
        pytest.param("PRIVATE+KEY+PeterNeumann+c74f20a3+AQID", "32 bytes", id="short-seed"),
        pytest.param("PRIVATE+KEY+PeterNeumann+c74f20a3", "expected <name>", id="no-seed"),
    ],
)
def test_bad_skey_is_refused_without_echoing_the_key(skey: str, message: str) -> None:
    with pytest.raises(errors.FormatError, match=message) as caught:
        parse_skey(skey)
    assert SKEY_B64 not in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a+b", id="plus"),
        pytest.param("a b", id="space"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\u2028b", id="line-separator"),
        pytest.param("a\u3000b", id="ideographic-space"),
        pytest.param("a\x85b", id="next-line"),
        pytest.param("a\x01b", id="control"),
        pytest.param("a\ud800b", id="lone-surrogate"),
    ],
)
def test_bad_key_name_is_refused(name: str) -> None:
    with pytest.raises(errors.FormatError):
        check_key_name(name)
    with pytest.raises(errors.FormatError):
        generate_signer(name, SEED)


@pytest.mark.parametrize("name", ["a", "example.com/log", "ünïcödé", "a\u200bb", "—"])
def test_good_key_name_is_accepted(name: str) -> None:
    check_key_name(name)
    assert generate_signer(name, SEED).name == name


def test_verifier_and_signer_refuse_inconsistent_fields() -> None:
    verifier = generate_signer("log", SEED).verifier()
    with pytest.raises(errors.FormatError, match="key hash"):
        Verifier("log", b"\0\0\0\0", verifier.public_key)
    with pytest.raises(errors.FormatError, match="32 bytes"):
        Verifier("log", verifier.key_hash, verifier.public_key[:31])
    with pytest.raises(errors.FormatError, match="key hash"):
        Signer("other", verifier.key_hash, SEED)
    with pytest.raises(errors.FormatError, match="32 bytes"):
        Signer("log", verifier.key_hash, SEED[:31])
    with pytest.raises(errors.FormatError, match="32 bytes"):
        generate_signer("log", SEED[:31])


def test_verify_wraps_invalid_signature() -> None:
    signer = generate_signer("log", SEED)
    signature = signer.sign(b"message")
    signer.verifier().verify(b"message", signature)
    for bad in (signature[:-1], signature + b"\0", bytes(64), b""):
        with pytest.raises(errors.SignatureError, match="invalid signature for key log\\+"):
            signer.verifier().verify(b"message", bad)


# ---------------------------------------------------------------------------------------------
# Notes: strict parsing

SIG_LINE = GO_NOTE[len(GO_TEXT) + 1 :]


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        pytest.param("", errors.FormatError, "no blank line", id="empty"),
        pytest.param("\n\n", errors.FormatError, "no signature lines", id="only-blank"),
        pytest.param(GO_TEXT + SIG_LINE, errors.FormatError, "blank line", id="no-blank-line"),
        pytest.param(GO_NOTE + "\n", errors.FormatError, "no signature lines", id="trailing-blank"),
        pytest.param(GO_NOTE[:-1], errors.FormatError, "newline", id="no-final-newline"),
        pytest.param("a\rb\n\n" + SIG_LINE, errors.FormatError, "U\\+000D", id="carriage-return"),
        pytest.param("a\tb\n\n" + SIG_LINE, errors.FormatError, "U\\+0009", id="tab"),
        pytest.param(b"\xff\n\n" + SIG_LINE.encode(), errors.FormatError, "UTF-8", id="bad-utf8"),
        pytest.param(
            b"\xed\xa0\x80\n\n" + SIG_LINE.encode(), errors.FormatError, "UTF-8", id="surr"
        ),
        pytest.param("\ud800\n\n" + SIG_LINE, errors.FormatError, "UTF-8", id="lone-surrogate"),
        pytest.param("a\n\n- x AAAAAAA=\n", errors.FormatError, "em dash", id="hyphen"),
        pytest.param("a\n\n\u2013 x AAAAAAA=\n", errors.FormatError, "em dash", id="en-dash"),
        pytest.param("a\n\n\u2014x AAAAAAA=\n", errors.FormatError, "em dash", id="no-space"),
        pytest.param("a\n\n\u2014  AAAAAAA=\n", errors.FormatError, "empty", id="empty-name"),
        pytest.param("a\n\n\u2014 x\n", errors.FormatError, "<key name>", id="no-signature"),
        pytest.param("a\n\n\u2014 x \n", errors.FormatError, "shorter", id="empty-base64"),
        pytest.param("a\n\n\u2014 a+b AAAAAAA=\n", errors.FormatError, "'\\+'", id="plus-name"),
        pytest.param("a\n\n\u2014 x AAAAAA==\n", errors.FormatError, "shorter", id="4-bytes"),
        pytest.param("a\n\n\u2014 x AAAAAAB=\n", errors.FormatError, "canonical", id="pad-bits"),
        pytest.param("a\n\n\u2014 x AAAAAAA\n", errors.FormatError, "base64", id="no-padding"),
        pytest.param("a\n\n\u2014 x AAAA AAA=\n", errors.FormatError, "base64", id="space-b64"),
        pytest.param("a\n\n\u2014 x AAAAAAA=\n\n", errors.FormatError, "no signature", id="blank"),
        pytest.param("a\n\n\u2014 x -_-_AAA=\n", errors.FormatError, "base64", id="url-safe"),
    ],
)
def test_malformed_note_is_refused(data: str | bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_note(data)


def _many_signatures(count: int) -> str:
    return "a\n\n" + "\u2014 x AAAAAAA=\n" * count


def test_signature_count_limit() -> None:
    assert len(parse_note(_many_signatures(MAX_SIGNATURES)).signatures) == MAX_SIGNATURES
    with pytest.raises(errors.LimitExceeded) as caught:
        parse_note(_many_signatures(MAX_SIGNATURES + 1))
    assert caught.value.details()["maximum"] == MAX_SIGNATURES


def test_note_size_limit_counts_utf8_bytes() -> None:
    tail = "\n\n\u2014 x AAAAAAA=\n"
    fits = "a" * (MAX_NOTE_BYTES - len(tail.encode())) + tail
    assert len(fits.encode()) == MAX_NOTE_BYTES
    parse_note(fits)
    parse_note(fits.encode())
    for too_big in ("é" + fits[1:], ("é" + fits[1:]).encode()):
        with pytest.raises(errors.LimitExceeded):
            parse_note(too_big)


def test_text_may_end_with_empty_lines() -> None:
    note = Note("a\n\n\n", (NoteSignature("x", b"\0" * 4, b"\0"),))
    assert format_note(note) == "a\n\n\n\n\u2014 x AAAAAAA=\n"
    assert parse_note(format_note(note)) == note


def test_signatures_of_unknown_key_types_are_kept() -> None:
    long_signature = NoteSignature("pq.example/key", b"\xff" * 4, bytes(range(256)) * 10)
    note = Note("x\n", (long_signature,))
    assert parse_note(format_note(note)) == note


@pytest.mark.parametrize(
    ("note", "message"),
    [
        pytest.param(Note("", (NoteSignature("x", b"1234", b"s"),)), "newline", id="empty-text"),
        pytest.param(Note("a", (NoteSignature("x", b"1234", b"s"),)), "newline", id="no-newline"),
        pytest.param(Note("a\x00\n", (NoteSignature("x", b"1234", b"s"),)), "U\\+0000", id="nul"),
        pytest.param(Note("a\n", ()), "no signature", id="unsigned"),
        pytest.param(Note("a\n", (NoteSignature("x y", b"1234", b"s"),)), "space", id="name"),
        pytest.param(Note("a\n", (NoteSignature("x", b"123", b"s"),)), "4 bytes", id="hash"),
        pytest.param(Note("a\n", (NoteSignature("x", b"1234", b""),)), "empty", id="no-sig"),
    ],
)
def test_format_refuses_what_parse_would_refuse(note: Note, message: str) -> None:
    with pytest.raises(errors.FormatError, match=message):
        format_note(note)


def test_format_refuses_too_many_signatures() -> None:
    sigs = (NoteSignature("x", b"1234", b"s"),) * (MAX_SIGNATURES + 1)
    with pytest.raises(errors.LimitExceeded):
        format_note(Note("a\n", sigs))


# ---------------------------------------------------------------------------------------------
# Signing and opening


def test_sign_note_refuses_bad_text_and_no_signers() -> None:
    signer = _skey("Known")
    with pytest.raises(errors.FormatError):
        sign_note("no newline", [signer])
    with pytest.raises(errors.FormatError):
        sign_note("", [signer])
    with pytest.raises(errors.FormatError):
        sign_note("a\n", [])


def test_sign_note_with_several_signers_keeps_their_order() -> None:
    signed = sign_note(GO_TEXT, [_skey("PeterNeumann"), _skey("Known")])
    assert signed.startswith(GO_NOTE)
    opened = open_note(signed, [_vkey("Known"), _vkey("PeterNeumann")])
    assert [s.name for s in opened.signatures] == ["PeterNeumann", "Known"]


def test_add_signature_appends_a_witness_line() -> None:
    cosigned = add_signature(GO_NOTE, _skey("Known"))
    assert cosigned.startswith(GO_NOTE)
    assert [s.name for s in parse_note(cosigned).signatures] == ["PeterNeumann", "Known"]
    assert len(open_note(cosigned, [_vkey("PeterNeumann"), _vkey("Known")]).signatures) == 2
    assert add_signature(cosigned.encode(), _skey("Known")) == cosigned


def test_add_signature_replaces_an_earlier_line_by_the_same_key() -> None:
    note = parse_note(GO_NOTE)
    stale = Note(
        note.text, (NoteSignature("Known", _vkey("Known").key_hash, b"old"), *note.signatures)
    )
    refreshed = add_signature(format_note(stale), _skey("Known"))
    assert [s.name for s in parse_note(refreshed).signatures] == ["PeterNeumann", "Known"]
    open_note(refreshed, [_vkey("Known")])


def test_open_ignores_signature_sharing_only_the_name_or_only_the_hash() -> None:
    peter = _vkey("PeterNeumann")
    same_name = generate_signer("PeterNeumann", SEED)
    signed = add_signature(GO_NOTE, same_name)
    opened = open_note(signed, [peter])
    assert [s.key_hash for s in opened.signatures] == [peter.key_hash]
    forged = NoteSignature("Other", peter.key_hash, bytes(64))
    note = parse_note(GO_NOTE)
    with_forgery = format_note(Note(note.text, (*note.signatures, forged)))
    assert len(open_note(with_forgery, [peter]).signatures) == 1


def test_open_rejects_a_bad_signature_from_a_known_key_even_after_a_good_one() -> None:
    # The spec says a known key's signatures MUST be verified; Go skips repeated lines.
    note = parse_note(GO_NOTE)
    bad = NoteSignature(note.signatures[0].name, note.signatures[0].key_hash, bytes(64))
    doubled = format_note(Note(note.text, (*note.signatures, bad)))
    with pytest.raises(errors.SignatureError, match="invalid signature"):
        open_note(doubled, [_vkey("PeterNeumann")])


def test_open_keeps_one_copy_of_a_repeated_valid_signature() -> None:
    note = parse_note(GO_NOTE)
    repeated = format_note(Note(note.text, note.signatures * 3))
    assert open_note(repeated, [_vkey("PeterNeumann")]).signatures == note.signatures


def test_open_reports_known_and_found_keys_when_unverified() -> None:
    with pytest.raises(errors.SignatureError) as caught:
        open_note(GO_NOTE, [_vkey("Known")])
    assert caught.value.details()["expected"] == "Known+451c786d"
    assert caught.value.details()["computed"] == "PeterNeumann+c74f20a3"


def test_open_with_no_verifiers_is_unverified() -> None:
    with pytest.raises(errors.SignatureError, match="unverified"):
        open_note(GO_NOTE, [])


def test_open_refuses_ambiguous_verifiers() -> None:
    peter = _vkey("PeterNeumann")
    impostor = object.__new__(Verifier)
    for name, value in (("name", peter.name), ("key_hash", peter.key_hash)):
        object.__setattr__(impostor, name, value)
    object.__setattr__(impostor, "public_key", bytes(32))
    with pytest.raises(errors.FormatError, match="share the id"):
        open_note(GO_NOTE, [peter, impostor])
    assert len(open_note(GO_NOTE, [peter, peter]).signatures) == 1


# ---------------------------------------------------------------------------------------------
# Independent agreement: OpenSSL verifies our signatures and the published example


def _openssl_verify(tmp_path: Path, public_key: bytes, message: bytes, signature: bytes) -> bool:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    pem = Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    (tmp_path / "message").write_bytes(message)
    (tmp_path / "signature").write_bytes(signature)
    command = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "key.pem")]
    command += ["-rawin", "-in", str(tmp_path / "message"), "-sigfile", str(tmp_path / "signature")]
    result = subprocess.run(command, capture_output=True, check=False, timeout=30)
    return result.returncode == 0 and b"Signature Verified Successfully" in result.stdout


def test_openssl_verifies_a_note_we_signed(tmp_path: Path) -> None:
    signer = generate_signer("example.com/log", SEED)
    text = "example.com/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    sig = parse_note(sign_note(text, [signer])).signatures[0]
    public_key = signer.verifier().public_key
    assert _openssl_verify(tmp_path, public_key, text.encode(), sig.signature)
    assert not _openssl_verify(tmp_path, public_key, text.encode() + b"x", sig.signature)


def test_openssl_verifies_the_published_c2sp_example(tmp_path: Path) -> None:
    case = next(c for c in CASES if c["id"] == "c2sp-signed-note-example")
    verifier = parse_vkey(case["vkeys"][0])
    note = parse_note(case["note"])
    assert note.signatures[0].key_hash == verifier.key_hash
    message, signature = note.text.encode(), note.signatures[0].signature
    assert _openssl_verify(tmp_path, verifier.public_key, message, signature)
    assert not _openssl_verify(tmp_path, verifier.public_key, message[1:], signature)


# ---------------------------------------------------------------------------------------------
# Properties

NAME_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), exclude_characters="+"
)
NAMES = st.text(NAME_CHARS, min_size=1, max_size=24)
TEXT_CHARS = st.one_of(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
    st.sampled_from(["\x7f", "\x85", " ", "\u2014", "\u00a0", "+"]),
)
LINES = st.lists(st.text(TEXT_CHARS, max_size=40), min_size=1, max_size=8)
TEXTS = LINES.map(lambda lines: "\n".join(lines) + "\n")
SIGNATURES = st.builds(
    NoteSignature, NAMES, st.binary(min_size=4, max_size=4), st.binary(min_size=1, max_size=96)
)
NOTES = st.builds(Note, TEXTS, st.lists(SIGNATURES, min_size=1, max_size=12).map(tuple))


@given(NOTES)
def test_note_round_trips_both_ways(note: Note) -> None:
    formatted = format_note(note)
    assert parse_note(formatted) == note
    assert parse_note(formatted.encode("utf-8")) == note
    assert format_note(parse_note(formatted)) == formatted


@given(TEXTS, TEXTS)
def test_signature_moved_to_another_text_fails(text: str, other: str) -> None:
    signer = generate_signer("example.com/log", SEED)
    signature = parse_note(sign_note(text, [signer])).signatures
    moved = format_note(Note(other, signature))
    if other == text:
        assert open_note(moved, [signer.verifier()]).text == text
        return
    with pytest.raises(errors.SignatureError, match="invalid signature"):
        open_note(moved, [signer.verifier()])


@given(TEXTS, st.binary(min_size=32, max_size=32), NAMES)
def test_signed_note_opens_with_its_key(text: str, seed: bytes, name: str) -> None:
    signer = generate_signer(name, seed)
    opened = open_note(sign_note(text, [signer]), [signer.verifier()])
    assert opened.text == text
    assert parse_vkey(format_vkey(signer.verifier())) == signer.verifier()
    assert parse_skey(format_skey(signer)) == signer
