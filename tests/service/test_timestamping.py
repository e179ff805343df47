"""RFC 3161 time-stamping against a real `openssl ts` TSA on loopback (tests/tsa.py).

Tokens are asked for once per module; every tamper test starts from that genuine token.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

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


SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"  # id-aa-signingCertificate, RFC 2634
SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"  # id-aa-signingCertificateV2, RFC 5035
HASH_OIDS = {
    "sha1": "1.3.14.3.2.26",
    "md5": "1.2.840.113549.2.5",
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}


# ---- DER, independently of the module under test: just enough to rewrite a SignerInfo


def der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def parse(element: bytes) -> tuple[int, bytes]:
    """(tag, content) of one DER element (definite lengths, low tags)."""
    size, at = element[1], 2
    if size & 0x80:
        at += size & 0x7F
        size = int.from_bytes(element[2:at], "big")
    assert at + size == len(element)
    return element[0], element[at:]


def split(content: bytes) -> list[bytes]:
    """The DER elements one after another in ``content``."""
    out = []
    while content:
        size, at = content[1], 2
        if size & 0x80:
            at += size & 0x7F
            size = int.from_bytes(content[2:at], "big")
        out.append(content[: at + size])
        content = content[at + size :]
    return out


def rewrite(element: bytes, path: Sequence[int], edit: Callable[[bytes], bytes]) -> bytes:
    """``element`` with its descendant at ``path`` (child indexes) replaced by ``edit`` of
    it, every enclosing length re-encoded."""
    if not path:
        return edit(element)
    tag, content = parse(element)
    children = split(content)
    children[path[0]] = rewrite(children[path[0]], path[1:], edit)
    return der(tag, b"".join(children))


# TimeStampResp.timeStampToken, ContentInfo [0], SignedData, signerInfos (last), the SignerInfo
SIGNER_INFO = (1, 1, 0, -1, 0)


def signed_attributes(response: bytes) -> list[bytes]:
    found: list[bytes] = []

    def keep(signer_info: bytes) -> bytes:
        attrs = split(parse(signer_info)[1])[3]
        assert attrs[0] == 0xA0  # [0] IMPLICIT signedAttrs
        found.extend(split(parse(attrs)[1]))
        return signer_info

    rewrite(response, SIGNER_INFO, keep)
    return found


def attribute_type(attribute: bytes) -> bytes:
    return split(parse(attribute)[1])[0]


def resign_attributes(
    response: bytes, key: ec.EllipticCurvePrivateKey, edit: Callable[[list[bytes]], list[bytes]]
) -> bytes:
    """The genuine ``response`` with its signed attributes passed through ``edit`` and the
    SignerInfo signed again with ``key`` (RFC 5652 §5.4: over the DER SET OF attributes)."""

    def resign(signer_info: bytes) -> bytes:
        tag, content = parse(signer_info)
        fields = split(content)
        assert len(fields) == 6 and fields[3][0] == 0xA0  # no unsignedAttrs
        attributes = b"".join(sorted(edit(split(parse(fields[3])[1]))))  # DER SET OF order
        signature = key.sign(der(0x31, attributes), ec.ECDSA(hashes.SHA256()))
        fields[3], fields[5] = der(0xA0, attributes), der(0x04, signature)
        return der(tag, b"".join(fields))

    return rewrite(response, SIGNER_INFO, resign)


def without_ess(attributes: list[bytes]) -> list[bytes]:
    ess = {oid_der(SIGNING_CERTIFICATE), oid_der(SIGNING_CERTIFICATE_V2)}
    return [a for a in attributes if attribute_type(a) not in ess]


def cert_id(certificate: bytes, hash_name: str, *, algorithm: bool, serial: bytes = b"") -> bytes:
    """ESSCertID(v2) { [hashAlgorithm,] certHash, [issuerSerial] } of a DER certificate."""
    alg = der(0x30, oid_der(HASH_OIDS[hash_name])) if algorithm else b""
    return der(0x30, alg + der(0x04, hashlib.new(hash_name, certificate).digest()) + serial)


def issuer_serial(issuer: x509.Name, serial: int) -> bytes:
    """IssuerSerial { issuer GeneralNames { directoryName [4] }, serialNumber }."""
    number = serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)
    return der(0x30, der(0x30, der(0xA4, issuer.public_bytes())) + der(0x02, number))


def ess(oid: str, *cert_ids: bytes) -> bytes:
    """The Attribute { oid, SET { SigningCertificate(V2) { certs SEQUENCE OF ... } } }."""
    return der(0x30, oid_der(oid) + der(0x31, der(0x30, der(0x30, b"".join(cert_ids)))))


@pytest.fixture(scope="module")
def tsa_key(tsa: TSA) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((tsa.dir / "tsa.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@pytest.fixture(scope="module")
def signer(tsa: TSA) -> x509.Certificate:
    return x509.load_pem_x509_certificate((tsa.dir / "tsa.pem").read_bytes())


@pytest.fixture(scope="module")
def other(tsa: TSA) -> x509.Certificate:
    """Another certificate from the same issuing CA (the one without an EKU)."""
    return x509.load_pem_x509_certificate((tsa.dir / "no_eku.pem").read_bytes())


def as_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


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


@pytest.mark.parametrize("signer_name", ["no_eku", "soft_eku"])
def test_signer_without_critical_timestamping_eku_is_refused(
    tsa: TSA, token: bytes, signer_name: str
) -> None:
    # same CA, same TSTInfo, valid signature (but no ESS attribute: the EKU is checked first)
    forged = tsa.resign(token, signer_name)
    with pytest.raises(TimestampError, match="lacks the critical timeStamping extended key"):
        verify_timestamp(forged, NOTE, [tsa.ca_der])


# ---- the ESS signing-certificate attribute (RFC 3161 §2.4.1, RFC 5035, RFC 5816)


def test_openssl_names_its_signer_in_signing_certificate_v2_with_default_sha256(
    tsa: TSA, token: bytes, signer: x509.Certificate
) -> None:
    # what `openssl ts -reply` writes with ess_cert_id_alg = sha256: one signingCertificateV2,
    # hashAlgorithm left to its DEFAULT, no issuerSerial; no v1 attribute - and it verifies
    expected = ess(SIGNING_CERTIFICATE_V2, cert_id(as_der(signer), "sha256", algorithm=False))
    types = [attribute_type(a) for a in signed_attributes(token)]
    assert oid_der(SIGNING_CERTIFICATE) not in types
    assert [a for a in signed_attributes(token) if a == expected] == [expected]
    assert verify_timestamp(token, NOTE, [tsa.ca_der]).tsa == tsa.tsa_subject


def test_token_resigned_with_its_own_signed_attributes_verifies(
    tsa: TSA, token: bytes, tsa_key: ec.EllipticCurvePrivateKey
) -> None:
    # control for the tests below: the re-signing itself yields a valid token
    resigned = resign_attributes(token, tsa_key, lambda attributes: attributes)
    assert resigned != token  # a fresh ECDSA signature
    assert verify_timestamp(resigned, NOTE, [tsa.ca_der]).tsa == tsa.tsa_subject


def test_token_resigned_by_openssl_cms_without_ess_attribute_is_refused(
    tsa: TSA, token: bytes
) -> None:
    # `openssl cms -sign` by the genuine TSA certificate: valid signature, chain and EKU, but
    # no signingCertificate(V2) attribute, which RFC 3161 §2.4.1 requires
    with pytest.raises(TimestampError, match=r"does not name its signing certificate \(ESS"):
        verify_timestamp(tsa.resign(token, "tsa"), NOTE, [tsa.ca_der])


def test_token_whose_ess_attribute_was_removed_is_refused(
    tsa: TSA, token: bytes, tsa_key: ec.EllipticCurvePrivateKey
) -> None:
    stripped = resign_attributes(token, tsa_key, without_ess)
    with pytest.raises(TimestampError, match=r"does not name its signing certificate \(ESS"):
        verify_timestamp(stripped, NOTE, [tsa.ca_der])


def _v2(*ids: bytes) -> bytes:
    return ess(SIGNING_CERTIFICATE_V2, *ids)


def _v1(*ids: bytes) -> bytes:
    return ess(SIGNING_CERTIFICATE, *ids)


# each builds the ESS attributes from (signer, other certificate)
EssBuilder = Callable[[x509.Certificate, x509.Certificate], list[bytes]]


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda s, o: [_v1(cert_id(as_der(s), "sha1", algorithm=False))], id="v1-sha1"),
        pytest.param(
            lambda s, o: [_v2(cert_id(as_der(s), "sha256", algorithm=True))], id="v2-sha256-stated"
        ),
        pytest.param(
            lambda s, o: [_v2(cert_id(as_der(s), "sha384", algorithm=True))], id="v2-sha384"
        ),
        pytest.param(
            lambda s, o: [_v2(cert_id(as_der(s), "sha512", algorithm=True))], id="v2-sha512"
        ),
        pytest.param(
            lambda s, o: [
                _v2(
                    cert_id(
                        as_der(s),
                        "sha256",
                        algorithm=False,
                        serial=issuer_serial(s.issuer, s.serial_number),
                    )
                )
            ],
            id="v2-with-issuer-serial",
        ),
        pytest.param(
            lambda s, o: [
                _v2(cert_id(as_der(s), "sha256", algorithm=False)),
                _v1(cert_id(as_der(o), "sha1", algorithm=False)),
            ],
            id="both-v2-takes-precedence",
        ),
        pytest.param(
            lambda s, o: [
                _v2(
                    cert_id(as_der(s), "sha256", algorithm=False),
                    cert_id(as_der(o), "sha256", algorithm=False),
                )
            ],
            id="the-first-cert-id-is-the-signer",
        ),
    ],
)
def test_ess_attribute_naming_the_signer_verifies(
    tsa: TSA,
    token: bytes,
    tsa_key: ec.EllipticCurvePrivateKey,
    signer: x509.Certificate,
    other: x509.Certificate,
    build: EssBuilder,
) -> None:
    edited = resign_attributes(token, tsa_key, lambda a: [*without_ess(a), *build(signer, other)])
    assert verify_timestamp(edited, NOTE, [tsa.ca_der]).tsa == tsa.tsa_subject


@pytest.mark.parametrize(
    ("build", "match"),
    [
        pytest.param(
            lambda s, o: [_v2(cert_id(as_der(o), "sha256", algorithm=False))],
            r"signingCertificateV2 sha256 certHash",
            id="v2-names-another-certificate",
        ),
        pytest.param(
            lambda s, o: [_v2(cert_id(as_der(o), "sha384", algorithm=True))],
            r"signingCertificateV2 sha384 certHash",
            id="v2-sha384-names-another-certificate",
        ),
        pytest.param(
            lambda s, o: [_v1(cert_id(as_der(o), "sha1", algorithm=False))],
            r"signingCertificate sha1 certHash",
            id="v1-names-another-certificate",
        ),
        pytest.param(
            lambda s, o: [
                _v2(
                    cert_id(as_der(o), "sha256", algorithm=False),
                    cert_id(as_der(s), "sha256", algorithm=False),
                )
            ],
            r"signingCertificateV2 sha256 certHash",
            id="the-signer-only-second",
        ),
        pytest.param(
            lambda s, o: [
                _v2(cert_id(as_der(o), "sha256", algorithm=False)),
                _v1(cert_id(as_der(s), "sha1", algorithm=False)),
            ],
            r"signingCertificateV2 sha256 certHash",
            id="both-a-wrong-v2-is-not-excused-by-v1",
        ),
        pytest.param(
            lambda s, o: [
                _v2(
                    cert_id(
                        as_der(s),
                        "sha256",
                        algorithm=False,
                        serial=issuer_serial(o.issuer, o.serial_number),
                    )
                )
            ],
            r"signingCertificateV2 issuerSerial",
            id="issuer-serial-of-another-certificate",
        ),
        pytest.param(
            lambda s, o: [
                _v2(
                    cert_id(
                        as_der(s),
                        "sha256",
                        algorithm=False,
                        serial=issuer_serial(s.subject, s.serial_number),
                    )
                )
            ],
            r"signingCertificateV2 issuerSerial",
            id="issuer-serial-with-another-issuer",
        ),
    ],
)
def test_ess_attribute_naming_another_certificate_is_refused(
    tsa: TSA,
    token: bytes,
    tsa_key: ec.EllipticCurvePrivateKey,
    signer: x509.Certificate,
    other: x509.Certificate,
    build: EssBuilder,
    match: str,
) -> None:
    # validly signed by the genuine TSA key and certificate: only the ESS attribute lies
    forged = resign_attributes(token, tsa_key, lambda a: [*without_ess(a), *build(signer, other)])
    with pytest.raises(
        TimestampError, match="ESS signing certificate is not the certificate that signed it"
    ) as caught:
        verify_timestamp(forged, NOTE, [tsa.ca_der])
    assert caught.match(match)


@pytest.mark.parametrize("hash_name", ["sha1", "md5"])
def test_ess_v2_hashed_with_another_algorithm_is_refused(
    tsa: TSA,
    token: bytes,
    tsa_key: ec.EllipticCurvePrivateKey,
    signer: x509.Certificate,
    hash_name: str,
) -> None:
    attribute = _v2(cert_id(as_der(signer), hash_name, algorithm=True))  # the right hash
    edited = resign_attributes(token, tsa_key, lambda a: [*without_ess(a), attribute])
    with pytest.raises(TimestampError, match="hashed with an unsupported algorithm"):
        verify_timestamp(edited, NOTE, [tsa.ca_der])


def test_ess_attribute_given_twice_is_refused(
    tsa: TSA, token: bytes, tsa_key: ec.EllipticCurvePrivateKey, signer: x509.Certificate
) -> None:
    one = _v2(cert_id(as_der(signer), "sha256", algorithm=False))
    other_one = _v2(cert_id(as_der(signer), "sha512", algorithm=True))
    edited = resign_attributes(token, tsa_key, lambda a: [*without_ess(a), one, other_one])
    with pytest.raises(TimestampError, match="names its signing certificate more than once"):
        verify_timestamp(edited, NOTE, [tsa.ca_der])


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(der(0x30, der(0x30, b"")), id="no-cert-ids"),
        pytest.param(
            der(0x30, der(0x30, der(0x30, der(0x02, b"\x01")))), id="cert-hash-not-octets"
        ),
        pytest.param(der(0x04, b"not a SigningCertificateV2"), id="not-a-sequence"),
    ],
)
def test_malformed_ess_attribute_is_refused(
    tsa: TSA, token: bytes, tsa_key: ec.EllipticCurvePrivateKey, value: bytes
) -> None:
    attribute = der(0x30, oid_der(SIGNING_CERTIFICATE_V2) + der(0x31, value))
    edited = resign_attributes(token, tsa_key, lambda a: [*without_ess(a), attribute])
    with pytest.raises(TimestampError, match="ESS signing certificate attribute is malformed"):
        verify_timestamp(edited, NOTE, [tsa.ca_der])


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
