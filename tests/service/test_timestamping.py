"""RFC 3161 time-stamping against a real `openssl ts` TSA on loopback (tests/tsa.py).

Tokens are asked for once per module; every tamper test starts from that genuine token.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from indelible.errors import FormatError, TimestampError, UpstreamError
from indelible.service.timestamping import (
    TimestampInfo,
    load_roots,
    request_timestamp,
    verify_timestamp,
)
from tests.tsa import OTHER_POLICY, POLICY, TSA, Mode, closed_port_url

# A signed checkpoint note, as the anchorer sends it: the whole note text, UTF-8.
NOTE = (
    "example.com/acme\n"
    "42\n"
    "7Rz7bsNnSkW0pMkEwzSS3VSkBvP3xJQ3Vq8wq1l0mWc=\n"
    "\n"
    "\u2014 example.com/acme Az3grlgtzPICa5OS8npBtPy6Cb9w7ahfXtC4Ln6EEtd9bMIkLZuoUAiBBwdzs=\n"
).encode()


def oid_der(dotted: str) -> bytes:
    """The DER encoding (tag, length, content) of an object identifier."""
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    content = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        content += bytes(reversed(chunk))
    return bytes([0x06, len(content)]) + bytes(content)


@pytest.fixture(scope="module")
def token(tsa: TSA) -> bytes:
    return request_timestamp(tsa.url, NOTE)


@pytest.fixture(scope="module")
def foreign_token(foreign_tsa: TSA) -> bytes:
    return request_timestamp(foreign_tsa.url, NOTE)


# ---- the genuine token


def test_token_from_the_real_tsa_verifies_against_its_root(tsa: TSA, token: bytes) -> None:
    before_ms = int(time.time() * 1000)
    info = verify_timestamp(token, NOTE, [tsa.ca_der])
    assert isinstance(info, TimestampInfo)
    assert abs(info.gen_time_ms - before_ms) < 120_000  # the token was made in this module
    assert info.policy == POLICY
    assert info.tsa == tsa.tsa_subject == "CN=test TSA,O=Indelible tests"
    assert info.serial >= 1


def test_token_verifies_with_the_root_from_a_pem_bundle_among_others(
    tsa: TSA, foreign_tsa: TSA, token: bytes
) -> None:
    roots = load_roots(foreign_tsa.ca_pem + tsa.ca_pem)
    assert roots == [foreign_tsa.ca_der, tsa.ca_der]
    # the issuing CA comes from the token itself; a root given twice is harmless
    info = verify_timestamp(token, NOTE, [*roots, tsa.ca_der])
    assert info.policy == POLICY


def test_each_request_gets_its_own_serial(tsa: TSA, token: bytes) -> None:
    again = request_timestamp(tsa.url, NOTE)
    first = verify_timestamp(token, NOTE, [tsa.ca_der])
    second = verify_timestamp(again, NOTE, [tsa.ca_der])
    assert second.serial != first.serial
    assert second.gen_time_ms >= first.gen_time_ms


# ---- tampering, offline


def test_message_changed_by_one_byte_is_refused_naming_the_imprint(tsa: TSA, token: bytes) -> None:
    changed = NOTE.replace(b"\n42\n", b"\n43\n")
    assert len(changed) == len(NOTE) and changed != NOTE
    with pytest.raises(TimestampError, match="covers other bytes than this checkpoint"):
        verify_timestamp(token, changed, [tsa.ca_der])


def test_foreign_root_is_refused_naming_the_chain(foreign_tsa: TSA, token: bytes) -> None:
    with pytest.raises(TimestampError, match="does not chain to a trusted root"):
        verify_timestamp(token, NOTE, [foreign_tsa.ca_der])


def test_token_from_a_foreign_tsa_carrying_its_own_root_is_refused(
    tsa: TSA, foreign_token: bytes
) -> None:
    # the foreign token embeds its self-signed root: it must not be trusted for being there
    with pytest.raises(TimestampError, match="does not chain to a trusted root"):
        verify_timestamp(foreign_token, NOTE, [tsa.ca_der])


def test_flipped_byte_in_the_signature_is_refused(tsa: TSA, token: bytes) -> None:
    # openssl ts adds no unsigned attributes: the TSA's signature value ends the response
    flipped = token[:-1] + bytes([token[-1] ^ 0x01])
    with pytest.raises(TimestampError, match="signature does not verify"):
        verify_timestamp(flipped, NOTE, [tsa.ca_der])


def test_flipped_byte_in_the_tstinfo_is_refused(tsa: TSA, token: bytes) -> None:
    # the policy OID appears only in the TSTInfo; its last arc 1 -> 2 still parses
    genuine, other = oid_der(POLICY), oid_der(OTHER_POLICY)
    assert token.count(genuine) == 1
    tampered = token.replace(genuine, other)
    with pytest.raises(TimestampError, match="signature does not verify"):
        verify_timestamp(tampered, NOTE, [tsa.ca_der])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda der: der[: len(der) // 2], id="truncated"),
        pytest.param(lambda der: b"", id="empty"),
        pytest.param(lambda der: b"not a TimeStampResp", id="garbage"),
        pytest.param(lambda der: der + b"\x00", id="trailing-byte"),
    ],
)
def test_damaged_response_is_a_timestamp_error(
    tsa: TSA, token: bytes, damage: Callable[[bytes], bytes]
) -> None:
    with pytest.raises(TimestampError, match="not a DER TimeStampResp"):
        verify_timestamp(damage(token), NOTE, [tsa.ca_der])


def test_rejection_response_is_not_a_token(tsa: TSA) -> None:
    _, _, rejection = tsa.answer(Mode.REJECT, b"")
    with pytest.raises(TimestampError, match="status is rejection, not granted"):
        verify_timestamp(rejection, NOTE, [tsa.ca_der])


def test_no_trusted_roots_is_refused(token: bytes) -> None:
    with pytest.raises(TimestampError, match="no trusted root"):
        verify_timestamp(token, NOTE, [])


def test_root_that_is_not_a_certificate_is_refused(token: bytes) -> None:
    with pytest.raises(TimestampError, match=r"trusted root is not a DER X\.509 certificate"):
        verify_timestamp(token, NOTE, [b"\x30\x03\x02\x01\x00"])


# ---- the TSA certificate's extended key usage (RFC 3161 §2.3)


def test_resigned_token_verifies_when_the_signer_has_the_eku(tsa: TSA, token: bytes) -> None:
    # control for the next test: `openssl cms -sign` by the genuine TSA certificate yields a
    # token that verifies (rfc3161-client does not require the ESS signingCertificate
    # attribute, which cms -sign leaves out), so a refusal below is the certificate's doing
    info = verify_timestamp(tsa.resign(token, "tsa"), NOTE, [tsa.ca_der])
    assert info.tsa == tsa.tsa_subject


@pytest.mark.parametrize("signer", ["no_eku", "soft_eku"])
def test_signer_without_critical_timestamping_eku_is_refused(
    tsa: TSA, token: bytes, signer: str
) -> None:
    forged = tsa.resign(token, signer)  # same CA, same TSTInfo, valid signature
    with pytest.raises(TimestampError, match="lacks the critical timeStamping extended key"):
        verify_timestamp(forged, NOTE, [tsa.ca_der])


# ---- asking the TSA


def test_tsa_answering_500_is_an_upstream_error_with_status_500(tsa: TSA) -> None:
    url = tsa.url_for(Mode.HTTP_500)
    with pytest.raises(UpstreamError, match="HTTP 500") as caught:
        request_timestamp(url, NOTE)
    assert caught.value.upstream_status == 500
    assert caught.value.url == url
    assert caught.value.status == 502  # what Indelible's own edge answers


def test_unreachable_tsa_is_an_upstream_error_without_status() -> None:
    url = closed_port_url()
    with pytest.raises(UpstreamError, match="could not be reached") as caught:
        request_timestamp(url, NOTE, timeout=2.0)
    assert caught.value.upstream_status is None


def test_reply_made_for_another_query_is_refused(tsa: TSA) -> None:
    # a genuine, granted, validly signed reply - to someone else's request
    with pytest.raises(TimestampError, match="another request: the nonce"):
        request_timestamp(tsa.url_for(Mode.OTHER_QUERY), NOTE)


def test_refusal_names_the_pkistatus_and_failinfo(tsa: TSA) -> None:
    with pytest.raises(UpstreamError, match=r"rejection \(2\), failInfo unacceptedPolicy"):
        request_timestamp(tsa.url_for(Mode.REJECT), NOTE)


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        (Mode.WRONG_TYPE, "text/plain, not application/timestamp-reply"),
        (Mode.OVERSIZED, "larger than the limit of 65536 bytes"),
        (Mode.GARBAGE, "not a TimeStampResp"),
    ],
)
def test_malformed_reply_is_an_upstream_error(tsa: TSA, mode: Mode, match: str) -> None:
    with pytest.raises(UpstreamError, match=match) as caught:
        request_timestamp(tsa.url_for(mode), NOTE)
    assert caught.value.upstream_status == 200


def test_non_http_url_is_refused_without_reading_it() -> None:
    with pytest.raises(UpstreamError, match="must be http"):
        request_timestamp("file:///etc/passwd", NOTE)


# ---- trusted roots


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"garbage, not PEM\n", id="garbage"),
        pytest.param(
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
            id="pem-armoured-garbage",
        ),
    ],
)
def test_load_roots_on_garbage_is_a_format_error(pem: bytes) -> None:
    with pytest.raises(FormatError):
        load_roots(pem)
