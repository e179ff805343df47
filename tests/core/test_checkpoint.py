"""C2SP tlog-checkpoint: public vectors, strict parsing, signing, opening, properties."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indelible import errors
from indelible.core.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    format_checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from indelible.core.note import (
    format_note,
    generate_signer,
    parse_note,
    parse_vkey,
    sign_note,
)
from tests.vectors import load_vectors

VECTORS: dict[str, Any] = load_vectors("signed-notes.json")
CASES: dict[str, dict[str, Any]] = {c["id"]: c for c in VECTORS["cases"]}
CHECKPOINT_CASES = [pytest.param(c, id=c["id"]) for c in CASES.values() if "checkpoint" in c]
SUMDB = CASES["sumdb-checkpoint-real"]
SUMDB_VKEY = parse_vkey(SUMDB["vkeys"][0])

ORIGIN = "example.com/indelible/billing"
SIGNER = generate_signer(ORIGIN, bytes(range(32)))
ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()


# ---------------------------------------------------------------------------------------------
# Public vectors


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_vector_checkpoint_body_parses(case: dict[str, Any]) -> None:
    text = parse_note(case["note"]).text
    cp = parse_checkpoint(text)
    expected = case["checkpoint"]
    assert cp.origin == expected["origin"]
    assert cp.size == expected["size"]
    assert cp.root == base64.b64decode(expected["root_b64"])
    assert cp.extensions == ()
    assert format_checkpoint(cp) == text


def test_tree_note_golden_round_trips() -> None:
    golden = VECTORS["tree_note_golden"]["text"]
    cp = parse_checkpoint(golden)
    assert (cp.origin, cp.size) == ("go.sum database tree", 123456789012)
    assert format_checkpoint(cp) == golden


def test_real_sumdb_checkpoint_opens_with_and_without_origin() -> None:
    for origin in (None, "go.sum database tree"):
        cp, note = open_checkpoint(SUMDB["note"], SUMDB_VKEY, origin)
        assert cp.size == 6476701
        assert [s.name for s in note.signatures] == ["sum.golang.org"]


def test_wrong_origin_carries_expected_and_computed() -> None:
    case = CASES["sumdb-checkpoint-wrong-origin"]
    with pytest.raises(errors.SignatureError) as caught:
        open_checkpoint(case["note"], SUMDB_VKEY, case["expected_origin"])
    details = caught.value.details()
    assert details["expected"] == case["expected_origin"]
    assert details["computed"] == "go.sum database tree"


def test_witnessed_checkpoint_opens_with_only_the_log_signature() -> None:
    case = CASES["sumdb-checkpoint-with-witness-sigs"]
    cp, note = open_checkpoint(case["note"].encode(), SUMDB_VKEY, "go.sum database tree")
    assert cp == open_checkpoint(SUMDB["note"], SUMDB_VKEY)[0]
    assert [s.name for s in note.signatures] == ["sum.golang.org"]


def test_a_witness_key_opens_the_checkpoint_it_cosigned() -> None:
    case = CASES["sumdb-checkpoint-with-witness-sigs"]
    monkeys = parse_vkey(case["vkeys"][1])
    cp, note = open_checkpoint(case["note"], monkeys)
    assert cp.origin == "go.sum database tree"
    assert [s.name for s in note.signatures] == ["monkeys"]


def test_checkpoint_of_another_log_is_unverified() -> None:
    with pytest.raises(errors.SignatureError, match="unverified"):
        open_checkpoint(CASES["c2sp-tlog-checkpoint-example"]["note"], SUMDB_VKEY)


# ---------------------------------------------------------------------------------------------
# Strict parsing and formatting

GOOD_BODY = f"{ORIGIN}\n42\n{ROOT_B64}\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param("", "end with a newline", id="empty"),
        pytest.param(GOOD_BODY[:-1], "end with a newline", id="no-final-newline"),
        pytest.param(f"{ORIGIN}\n42\n", "needs origin", id="two-lines"),
        pytest.param(f"\n42\n{ROOT_B64}\n", "origin is empty", id="empty-origin"),
        pytest.param(f"{ORIGIN}\n042\n{ROOT_B64}\n", "leading zeros", id="leading-zero"),
        pytest.param(f"{ORIGIN}\n00\n{ROOT_B64}\n", "leading zeros", id="double-zero"),
        pytest.param(f"{ORIGIN}\n+42\n{ROOT_B64}\n", "decimal", id="plus-sign"),
        pytest.param(f"{ORIGIN}\n-1\n{ROOT_B64}\n", "decimal", id="negative"),
        pytest.param(f"{ORIGIN}\n 42\n{ROOT_B64}\n", "decimal", id="space"),
        pytest.param(f"{ORIGIN}\n4_2\n{ROOT_B64}\n", "decimal", id="underscore"),
        pytest.param(f"{ORIGIN}\n\u0664\u0662\n{ROOT_B64}\n", "decimal", id="arabic-digits"),
        pytest.param(f"{ORIGIN}\n\n{ROOT_B64}\n", "decimal", id="empty-size"),
        pytest.param(f"{ORIGIN}\n{1 << 63}\n{ROOT_B64}\n", "2\\^63", id="size-2^63"),
        pytest.param(f"{ORIGIN}\n{'9' * 5000}\n{ROOT_B64}\n", "decimal", id="huge-size"),
        pytest.param(f"{ORIGIN}\n42\n\n", "root hash is empty", id="empty-root"),
        pytest.param(f"{ORIGIN}\n42\n{ROOT_B64[:-1]}\n", "base64", id="unpadded-root"),
        pytest.param(f"{ORIGIN}\n42\n{ROOT_B64[:-2]}9=\n", "canonical", id="pad-bits"),
        pytest.param(f"{ORIGIN}\n42\nAAAA{ROOT_B64}\n", "35 bytes", id="long-root"),
        pytest.param(f"{ORIGIN}\n42\n{'A' * 40}\n", "30 bytes", id="short-root"),
        pytest.param(f"{ORIGIN}\n42\n{'_' * 43}=\n", "base64", id="url-safe-root"),
        pytest.param(GOOD_BODY + "\n", "extension line is empty", id="empty-extension"),
        pytest.param(GOOD_BODY + "x\n\ny\n", "extension line is empty", id="blank-in-extensions"),
        pytest.param(f"{ORIGIN}\r\n42\n{ROOT_B64}\n", "U\\+000D", id="carriage-return"),
        pytest.param(GOOD_BODY + "a\tb\n", "U\\+0009", id="tab-extension"),
        pytest.param(f"\ud800\n42\n{ROOT_B64}\n", "UTF-8", id="lone-surrogate"),
    ],
)
def test_malformed_checkpoint_is_refused(body: str, message: str) -> None:
    with pytest.raises(errors.FormatError, match=message):
        parse_checkpoint(body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(f"{ORIGIN}\n0\n{ROOT_B64}\n", id="empty-tree"),
        pytest.param(f"{ORIGIN}\n{MAX_TREE_SIZE}\n{ROOT_B64}\n", id="max-size"),
        pytest.param(f"go.sum database tree\n1\n{ROOT_B64}\n", id="origin-with-spaces"),
        pytest.param(f"a+b\n1\n{ROOT_B64}\n", id="origin-with-plus"),
        pytest.param(f"{ORIGIN}\n1\n{ROOT_B64}\n— x\n \n", id="odd-extensions"),
    ],
)
def test_unusual_but_valid_checkpoint_round_trips(body: str) -> None:
    assert format_checkpoint(parse_checkpoint(body)) == body


@pytest.mark.parametrize(
    ("cp", "message"),
    [
        pytest.param(Checkpoint("", 1, ROOT), "origin is empty", id="empty-origin"),
        pytest.param(Checkpoint("a\nb", 1, ROOT), "U\\+000A", id="newline-origin"),
        pytest.param(Checkpoint(ORIGIN, -1, ROOT), "tree size", id="negative-size"),
        pytest.param(Checkpoint(ORIGIN, 1 << 63, ROOT), "tree size", id="size-2^63"),
        pytest.param(Checkpoint(ORIGIN, True, ROOT), "tree size", id="bool-size"),
        pytest.param(Checkpoint(ORIGIN, 1, ROOT[:31]), "32 bytes", id="short-root"),
        pytest.param(Checkpoint(ORIGIN, 1, ROOT, ("",)), "extension line", id="empty-ext"),
        pytest.param(Checkpoint(ORIGIN, 1, ROOT, ("a\nb",)), "extension", id="newline-ext"),
    ],
)
def test_format_refuses_what_parse_would_refuse(cp: Checkpoint, message: str) -> None:
    with pytest.raises(errors.FormatError, match=message):
        format_checkpoint(cp)


# ---------------------------------------------------------------------------------------------
# Signing and opening


def test_signed_checkpoint_has_the_documented_shape() -> None:
    signed = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), SIGNER)
    body, _, signature_line = signed.partition("\n\n")
    assert body + "\n" == GOOD_BODY
    assert signature_line.startswith(f"\u2014 {ORIGIN} ")
    assert signature_line.endswith("\n")
    assert len(base64.b64decode(signature_line.split(" ")[2])) == 4 + 64


def test_signed_checkpoint_opens_with_the_log_key() -> None:
    cp = Checkpoint(ORIGIN, 42, ROOT)
    signed = sign_checkpoint(cp, SIGNER)
    opened, note = open_checkpoint(signed, SIGNER.verifier(), ORIGIN)
    assert opened == cp
    assert note.text == GOOD_BODY


def test_sign_refuses_extension_lines() -> None:
    with pytest.raises(errors.FormatError, match="extension"):
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT, ("ext",)), SIGNER)


@pytest.mark.parametrize("origin", ["go.sum database tree", "a+b", "a\u00a0b", ""])
def test_sign_refuses_origins_the_spec_recommends_against(origin: str) -> None:
    with pytest.raises(errors.FormatError, match="origin"):
        sign_checkpoint(Checkpoint(origin, 1, ROOT), SIGNER)


def test_open_refuses_a_signed_note_that_is_not_a_checkpoint() -> None:
    signed = sign_note("hello\n", [SIGNER])
    with pytest.raises(errors.FormatError, match="checkpoint"):
        open_checkpoint(signed, SIGNER.verifier())


def test_open_refuses_another_logs_key() -> None:
    signed = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), SIGNER)
    other = generate_signer(ORIGIN, bytes(32)).verifier()
    with pytest.raises(errors.SignatureError, match="unverified"):
        open_checkpoint(signed, other)


def test_open_refuses_a_checkpoint_whose_root_was_swapped() -> None:
    signed = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), SIGNER)
    note = parse_note(signed)
    swapped = format_checkpoint(Checkpoint(ORIGIN, 42, bytes(32)))
    forged = format_note(type(note)(swapped, note.signatures))
    with pytest.raises(errors.SignatureError, match="invalid signature"):
        open_checkpoint(forged, SIGNER.verifier())


# ---------------------------------------------------------------------------------------------
# Properties

LINE_CHARS = st.one_of(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
    st.sampled_from(["\x7f", "\x85", " ", "+", "\u2014"]),
)
LINES = st.text(LINE_CHARS, min_size=1, max_size=40)
ORIGINS = st.text(
    st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), exclude_characters="+"
    ),
    min_size=1,
    max_size=40,
)
SIZES = st.integers(min_value=0, max_value=MAX_TREE_SIZE)
ROOTS = st.binary(min_size=32, max_size=32)
CHECKPOINTS = st.builds(Checkpoint, LINES, SIZES, ROOTS, st.lists(LINES, max_size=4).map(tuple))


@given(CHECKPOINTS)
def test_checkpoint_round_trips_both_ways(cp: Checkpoint) -> None:
    body = format_checkpoint(cp)
    assert parse_checkpoint(body) == cp
    assert format_checkpoint(parse_checkpoint(body)) == body


@given(ORIGINS, SIZES, ROOTS, st.data())
def test_any_single_byte_change_to_a_signed_checkpoint_fails(
    origin: str, size: int, root: bytes, data: st.DataObject
) -> None:
    signer = generate_signer(origin, bytes(range(32)))
    signed = sign_checkpoint(Checkpoint(origin, size, root), signer).encode("utf-8")
    assert open_checkpoint(signed, signer.verifier(), origin)[0].root == root
    index = data.draw(st.integers(min_value=0, max_value=len(signed) - 1), label="index")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != signed[index]), label="byte")
    tampered = signed[:index] + bytes([value]) + signed[index + 1 :]
    with pytest.raises((errors.InputError, errors.SignatureError)):
        open_checkpoint(tampered, signer.verifier(), origin)
