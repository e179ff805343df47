"""RFC 3161 time-stamping of checkpoints: ask a TSA for a token, verify a stored one offline.

The message time-stamped is the exact UTF-8 bytes of a signed checkpoint note; the request
carries its SHA-256 imprint, a random nonce and ``certReq`` (so the token holds the TSA's
certificate and can be verified later without asking anyone). :func:`request_timestamp`
checks that the reply answers *this* request; :func:`verify_timestamp` checks, offline, that a
stored reply is an authentic token over *these* bytes from a TSA chaining to a trusted root.

Requests, response decoding and the CMS signature check use ``rfc3161-client``. Around it this
module checks what it leaves out or reports too vaguely to act on:

- it rejects ``openssl ts`` replies carrying more than one certificate (openssl writes the
  certificates SET unsorted; the parser demands DER order), so replies are re-sorted first;
- it does not decode ``failInfo`` of a refusal;
- its errors say "Error while verifying certificates" for a bad chain, a bad signature and an
  unsuitable certificate alike, so chain, EKU and imprint are checked here first, each failure
  naming the check;
- it takes any SHA-2 imprint; the checkpoint imprint must be SHA-256.

- it does not check the ESS signing-certificate attribute (RFC 3161 §2.4.1, RFC 5816), which
  binds the signature to the certificate it names, so that is checked here after the signature.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimeStampRequest,
    TimestampRequestBuilder,
    TimeStampResponse,
    TimeStampTokenInfo,
    VerifierBuilder,
    decode_timestamp_response,
)

from indelible.errors import FormatError, TimestampError, UpstreamError

__all__ = [
    "MAX_REPLY_BYTES",
    "QUERY_TYPE",
    "REPLY_TYPE",
    "TimestampInfo",
    "load_roots",
    "request_timestamp",
    "verify_timestamp",
]

QUERY_TYPE = "application/timestamp-query"  # RFC 3161 §3.4
REPLY_TYPE = "application/timestamp-reply"
MAX_REPLY_BYTES = 64 * 1024
"""A longer reply is refused: real tokens with a certificate chain are a few KiB."""

_SHA256 = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
# OIDs as their DER content octets
_ESS_V1 = bytes.fromhex("2a864886f70d010910020c")  # id-aa-signingCertificate, RFC 2634 §5.4
_ESS_V2 = bytes.fromhex("2a864886f70d010910022f")  # id-aa-signingCertificateV2, RFC 5035 §3
_ESS_HASHES = {  # ESSCertIDv2.hashAlgorithm -> hashlib name
    bytes.fromhex("608648016503040201"): "sha256",
    bytes.fromhex("608648016503040202"): "sha384",
    bytes.fromhex("608648016503040203"): "sha512",
}
_Element = tuple[int, int, int, int]
"""(tag, start of element, start of content, end) in some DER bytes."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_CHAIN = 8
_STATUS = {
    0: "granted",
    1: "grantedWithMods",
    2: "rejection",
    3: "waiting",
    4: "revocationWarning",
    5: "revocationNotification",
}
_FAIL_INFO = {  # PKIFailureInfo bits, RFC 3161 §2.4.2
    0: "badAlg",
    2: "badRequest",
    5: "badDataFormat",
    14: "timeNotAvailable",
    15: "unacceptedPolicy",
    16: "unacceptedExtension",
    17: "addInfoNotAvailable",
    25: "systemFailure",
}


@dataclass(frozen=True)
class TimestampInfo:
    """What a verified token says."""

    gen_time_ms: int  # genTime of the token, epoch ms
    serial: int  # serialNumber of the TSTInfo
    tsa: str  # subject of the TSA signing certificate, RFC 4514 string
    policy: str  # policy OID dotted string


# ---- asking a TSA


def request_timestamp(url: str, message: bytes, *, timeout: float = 10.0) -> bytes:
    """POST a TimeStampReq (SHA-256 imprint of ``message``, random nonce, certReq=True) to
    ``url`` and return the DER TimeStampResp bytes, exactly as received, once they answer it.

    Raises :class:`UpstreamError` (``status`` = the HTTP status, or None) when the TSA cannot
    be reached, answers other than 200 ``application/timestamp-reply``, sends more than
    :data:`MAX_REPLY_BYTES` or something that is not a TimeStampResp, or refuses (the
    PKIStatus and failInfo are named); :class:`TimestampError` when a granted reply does not
    answer this request (nonce, imprint, certificate missing).
    """
    if not message:
        raise FormatError("nothing to time-stamp: the message is empty")
    # 1. RFC 3161 §2.4.1: TimeStampReq { messageImprint SHA-256, nonce, certReq TRUE }
    builder = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256)
    request = builder.nonce(nonce=True).cert_request(cert_request=True).build()
    body = _post(url, request.as_bytes(), timeout)  # 2. §3.4: over HTTP
    try:
        reply = _decode(body)
    except ValueError as exc:
        raise UpstreamError(
            f"TSA answered bytes that are not a TimeStampResp: {exc}", url=url, status=200
        ) from None
    _check_granted(url, reply, body)  # 3. §2.4.2: PKIStatusInfo
    with _failing_as("TSA reply is not a usable time-stamp token"):
        _check_answers(reply, request, message)  # 4. §2.4.2: it answers this request
    return body


def _post(url: str, query: bytes, timeout: float) -> bytes:
    if urlsplit(url).scheme not in ("http", "https"):
        raise UpstreamError("a time-stamping authority URL must be http(s)", url=url)
    request = urllib.request.Request(
        url, data=query, method="POST", headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return _read_reply(url, response)
    except urllib.error.HTTPError as exc:
        with exc:
            raise UpstreamError(f"TSA answered HTTP {exc.code}", url=url, status=exc.code) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise UpstreamError(f"TSA could not be reached or did not answer: {exc}", url=url) from None


def _read_reply(url: str, response: http.client.HTTPResponse) -> bytes:
    status = response.status
    if status != 200:
        raise UpstreamError(f"TSA answered HTTP {status}, not 200", url=url, status=status)
    content_type = response.headers.get_content_type()
    if content_type != REPLY_TYPE:
        raise UpstreamError(
            f"TSA answered {content_type}, not {REPLY_TYPE}", url=url, status=status
        )
    body = response.read(MAX_REPLY_BYTES + 1)
    if len(body) > MAX_REPLY_BYTES:
        raise UpstreamError(
            f"TSA reply is larger than the limit of {MAX_REPLY_BYTES} bytes", url=url, status=status
        )
    return body


def _check_granted(url: str, reply: TimeStampResponse, body: bytes) -> None:
    status = reply.status
    if status in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        return
    name = _STATUS.get(status, "unknown")
    fail_info = ", ".join(_fail_info(body)) or "none given"
    text = "; ".join(reply.status_string)
    detail = f": {text}" if text else ""
    raise UpstreamError(
        f"TSA refused: PKIStatus {name} ({status}), failInfo {fail_info}{detail}",
        url=url,
        status=200,
    )


def _check_answers(reply: TimeStampResponse, request: TimeStampRequest, message: bytes) -> None:
    tst = reply.tst_info
    if tst.nonce != request.nonce:
        raise TimestampError("TSA reply is for another request: the nonce was not echoed")
    if not _imprint_matches(tst, message):
        raise TimestampError("TSA reply time-stamps other bytes than those sent (message imprint)")
    if not reply.signed_data.certificates:
        raise TimestampError("TSA reply lacks its signing certificate though certReq was set")


def _no_redirects() -> urllib.request.OpenerDirector:
    """http(s) only, proxies from the environment, and a 3xx is an HTTPError, not followed."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


_OPENER = _no_redirects()


# ---- trusted roots


def load_roots(pem: bytes) -> list[bytes]:
    """Split a PEM bundle into DER certificates; :class:`FormatError` if none or malformed."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise FormatError(f"not a PEM bundle of X.509 certificates: {exc}") from None
    return [certificate.public_bytes(Encoding.DER) for certificate in certificates]


# ---- verifying a stored token


def verify_timestamp(response: bytes, message: bytes, roots: Sequence[bytes]) -> TimestampInfo:
    """Verify a stored DER TimeStampResp offline against trusted root certificates (DER).

    Returns what the token says, or raises :class:`TimestampError` naming the check that
    failed. The signer's certificate chain is checked at the token's genTime, so a token
    stays verifiable after the TSA certificate expires.
    """
    trusted = _trusted(roots)
    with _failing_as("not a DER TimeStampResp"):
        reply = _decode(response)
    with _failing_as("timestamp token is malformed"):
        tst, signer, pool = _token_parts(reply)  # 1.-2.
        gen_time = tst.gen_time
        _check_chain(signer, pool, trusted, gen_time)  # 3.
        _check_eku(signer)  # 4.
        if not _imprint_matches(tst, message):  # 5. §2.4.2: messageImprint = SHA-256(message)
            raise TimestampError(
                "timestamp token covers other bytes than this checkpoint (message imprint)"
            )
        _check_signature(reply, message, trusted)  # 6.
        _check_signing_certificate(response, signer)  # 7.
        info = TimestampInfo(
            gen_time_ms=(gen_time - _EPOCH) // timedelta(milliseconds=1),
            serial=tst.serial_number,
            tsa=signer.subject.rfc4514_string(),
            policy=tst.policy.dotted_string,
        )
    return info


def _token_parts(
    reply: TimeStampResponse,
) -> tuple[TimeStampTokenInfo, x509.Certificate, list[x509.Certificate]]:
    """(TSTInfo, signer certificate, the token's other certificates)."""
    # 1. RFC 3161 §2.4.2: status granted, so a TimeStampToken is present (grantedWithMods is
    #    refused by rfc3161-client's verifier, so it is refused here by name)
    if reply.status != PKIStatus.GRANTED:
        name = _STATUS.get(reply.status, "unknown")
        raise TimestampError(f"timestamp response status is {name}, not granted")
    with _failing_as("timestamp token is malformed"):
        tst, signed = reply.tst_info, reply.signed_data
        certificates = [x509.load_der_x509_certificate(der) for der in signed.certificates]
        signer_infos = list(signed.signer_infos)
    # 2. §2.4.2: the token carries no signature other than the TSA's; RFC 5652 §5.3: its
    #    sid (issuerAndSerialNumber) names the signing certificate, which certReq put in
    if len(signer_infos) != 1:
        raise TimestampError(f"timestamp token has {len(signer_infos)} signers, not one")
    with _failing_as("timestamp token's signer is not named by issuer and serial"):
        issuer, serial = signer_infos[0].issuer, signer_infos[0].serial_number
    for certificate in certificates:
        if certificate.issuer == issuer and certificate.serial_number == serial:
            return tst, certificate, [c for c in certificates if c is not certificate]
    raise TimestampError("timestamp token does not include its signing certificate")


def _trusted(roots: Sequence[bytes]) -> list[x509.Certificate]:
    """The trusted roots, loaded and without duplicates (rfc3161-client refuses those)."""
    if not roots:
        raise TimestampError("no trusted root certificates to verify the timestamp token with")
    with _failing_as("a trusted root is not a DER X.509 certificate"):
        loaded = [x509.load_der_x509_certificate(bytes(root)) for root in roots]
    return list(dict.fromkeys(loaded))


def _check_chain(
    signer: x509.Certificate,
    pool: list[x509.Certificate],
    roots: list[x509.Certificate],
    at: datetime,
) -> None:
    """3. RFC 5280 §6.1 (as far as a TSA needs it): each certificate is signed by the next
    and valid at genTime, intermediates (from the token, never trusted themselves) are CAs,
    and the path ends at a trusted root. rfc3161-client checks the chain too, but its
    failure does not say so."""
    intermediates = [c for c in pool if c.issuer != c.subject and _is_ca(c)]
    certificate = signer
    for _ in range(_MAX_CHAIN):
        _check_valid_at(certificate, at)
        if _issued_by_one_of(certificate, roots) is not None:
            return
        issuer = _issued_by_one_of(certificate, intermediates)
        if issuer is None:
            break
        certificate = issuer
    raise TimestampError("timestamp token does not chain to a trusted root")


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _issued_by_one_of(
    certificate: x509.Certificate, candidates: list[x509.Certificate]
) -> x509.Certificate | None:
    for issuer in candidates:
        if issuer.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return issuer
    return None


def _check_valid_at(certificate: x509.Certificate, at: datetime) -> None:
    if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
        subject = certificate.subject.rfc4514_string()
        raise TimestampError(
            f"timestamp token does not chain to a trusted root: {subject} was not valid "
            f"at the token's genTime {at.isoformat()}"
        )


def _check_eku(signer: x509.Certificate) -> None:
    """4. RFC 3161 §2.3: the TSA certificate has exactly one extended key usage,
    id-kp-timeStamping, in a critical extension."""
    try:
        eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        eku = None
    except ValueError as exc:
        raise TimestampError(f"timestamp signing certificate has bad extensions: {exc}") from None
    if eku is None or not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampError(
            "timestamp signing certificate lacks the critical timeStamping extended key usage"
        )


def _imprint_matches(tst: TimeStampTokenInfo, message: bytes) -> bool:
    imprint = tst.message_imprint
    return imprint.hash_algorithm == _SHA256 and imprint.message == hashlib.sha256(message).digest()


def _check_signature(
    reply: TimeStampResponse, message: bytes, roots: list[x509.Certificate]
) -> None:
    """6. RFC 5652 §5.4, §5.6 via rfc3161-client (OpenSSL PKCS7_verify at genTime): the
    messageDigest attribute matches the TSTInfo and the signature over the signed
    attributes verifies with the signer's key. Only the roots are given as trusted: the
    token's own certificates serve as untrusted intermediates."""
    with _failing_as("timestamp token signature does not verify"):
        builder = VerifierBuilder()
        for root in roots:
            builder = builder.add_root_certificate(root)
        builder.build().verify_message(reply, message)


def _check_signing_certificate(response: bytes, signer: x509.Certificate) -> None:
    """7. RFC 3161 §2.4.1 with RFC 5816 §2.2.1: the signed attributes name the signing
    certificate in one ESS SigningCertificateV2 (RFC 5035 §3) or SigningCertificate (RFC 2634
    §5.4) attribute; V2, the algorithm-agile one, is the one checked when both are present.
    RFC 5035 §3: its first ESSCertID(v2) is the certificate that verified the signature, which
    is invalid if certHash does not match, and so is a token whose issuerSerial does not."""
    with _failing_as("timestamp token's ESS signing certificate attribute is malformed"):
        v2, value = _ess_attribute(_signed_attributes(response))
        algorithm, cert_hash, issuer_serial = _first_cert_id(value, v2=v2)
        mismatch = None
        if hashlib.new(algorithm, signer.public_bytes(Encoding.DER)).digest() != cert_hash:
            mismatch = f"{algorithm} certHash"
        elif issuer_serial is not None and not _names(value, issuer_serial, signer):
            mismatch = "issuerSerial"
    if mismatch is not None:
        attribute = "signingCertificateV2" if v2 else "signingCertificate"
        raise TimestampError(
            "timestamp token's ESS signing certificate is not the certificate that signed it "
            f"({attribute} {mismatch})"
        )


def _ess_attribute(attributes: list[tuple[bytes, list[bytes]]]) -> tuple[bool, bytes]:
    """(whether it is V2, the DER of its value) of the ESS signing-certificate attribute."""
    for oid in (_ESS_V2, _ESS_V1):
        found = [values for key, values in attributes if key == oid]
        if not found:
            continue
        if len(found) != 1 or len(found[0]) != 1:
            raise TimestampError(
                "timestamp token names its signing certificate more than once (ESS "
                "signingCertificate attribute or value repeated)"
            )
        return oid == _ESS_V2, found[0][0]
    raise TimestampError(
        "timestamp token does not name its signing certificate (ESS signingCertificate)"
    )


def _first_cert_id(value: bytes, *, v2: bool) -> tuple[str, bytes, _Element | None]:
    """(hashlib name, certHash, issuerSerial if present) of the first ESSCertID(v2) in the
    DER of a SigningCertificate(V2) value: SEQUENCE { certs SEQUENCE OF ESSCertID(v2), ... },
    ESSCertID ::= SEQUENCE { certHash, issuerSerial OPTIONAL }, ESSCertIDv2 the same after
    hashAlgorithm DEFAULT sha256."""
    (whole,) = _children(value, 0, len(value))
    certs = _items(value, _items(value, whole)[0])
    fields = _items(value, certs[0])
    algorithm = "sha256" if v2 else "sha1"
    if v2 and fields and fields[0][0] == 0x30:
        algorithm, fields = _hash_name(value, fields[0]), fields[1:]
    cert_hash, *rest = fields
    if cert_hash[0] != 0x04 or len(rest) > 1 or any(f[0] != 0x30 for f in rest):
        raise ValueError("ESSCertID is not { certHash OCTET STRING, issuerSerial OPTIONAL }")
    return algorithm, value[cert_hash[2] : cert_hash[3]], rest[0] if rest else None


def _hash_name(data: bytes, algorithm: _Element) -> str:
    """The hashlib name of an ESSCertIDv2 hashAlgorithm (parameters absent or NULL)."""
    oid, *parameters = _items(data, algorithm)
    if oid[0] != 0x06 or len(parameters) > 1 or any(p[0] != 0x05 for p in parameters):
        raise ValueError("hashAlgorithm is not an AlgorithmIdentifier of a hash")
    name = _ESS_HASHES.get(data[oid[2] : oid[3]])
    if name is None:
        raise TimestampError(
            "timestamp token's ESS signing certificate is hashed with an unsupported "
            "algorithm (SHA-256, SHA-384 or SHA-512 are)"
        )
    return name


def _names(data: bytes, issuer_serial: _Element, certificate: x509.Certificate) -> bool:
    """IssuerSerial ::= SEQUENCE { issuer GeneralNames, serialNumber INTEGER } names
    ``certificate``: its one GeneralName is directoryName [4] of the certificate's issuer."""
    names, serial = _items(data, issuer_serial)
    if serial[0] != 0x02:
        raise ValueError("IssuerSerial.serialNumber is not an INTEGER")
    issuer = [(n[0], data[n[2] : n[3]]) for n in _items(data, names)]
    number = int.from_bytes(data[serial[2] : serial[3]], "big", signed=True)
    expected = (0xA4, certificate.issuer.public_bytes())
    return issuer == [expected] and number == certificate.serial_number


# ---- DER, as little as needed


def _decode(der: bytes) -> TimeStampResponse:
    """rfc3161-client's TimeStampResp parser on the reply with its certificates in DER order."""
    return decode_timestamp_response(_sorted_certificates(der))


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``at``."""
    if at + 2 > len(data) or data[at] & 0x1F == 0x1F:
        raise ValueError("truncated or multi-byte tag")
    first, start = data[at + 1], at + 2
    if first & 0x80:
        count = first & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("indefinite or oversized length")
        start += count
        first = int.from_bytes(data[at + 2 : start], "big")
    if start + first > len(data):
        raise ValueError("truncated")
    return data[at], start, start + first


def _children(data: bytes, start: int, end: int) -> list[_Element]:
    """(tag, start of element, start of content, end) of each element in data[start:end]."""
    out: list[_Element] = []
    while start < end:
        tag, content, stop = _tlv(data, start)
        out.append((tag, start, content, stop))
        start = stop
    return out


def _items(data: bytes, element: _Element, tag: int = 0x30) -> list[_Element]:
    """The elements inside ``element``, which must have ``tag`` (a SEQUENCE unless told)."""
    if element[0] != tag:
        raise ValueError(f"expected DER tag {tag:#04x}, found {element[0]:#04x}")
    return _children(data, element[2], element[3])


def _signed_data_fields(der: bytes) -> list[_Element]:
    """The fields of the SignedData (RFC 5652 §5.1) in a DER TimeStampResp (RFC 3161 §2.4.2);
    ValueError or IndexError if it is not shaped so."""
    _, start, end = _tlv(der, 0)
    token = _children(der, start, end)[1]  # TimeStampResp { status, timeStampToken }
    wrapper = _children(der, token[2], token[3])[1]  # ContentInfo { type, [0] content }
    signed_data = _children(der, wrapper[2], wrapper[3])[0]
    return _children(der, signed_data[2], signed_data[3])


def _signed_attributes(der: bytes) -> list[tuple[bytes, list[bytes]]]:
    """(type OID content octets, DER of each value) of each signed attribute of the one
    SignerInfo (RFC 5652 §5.3) in a DER TimeStampResp."""
    (signer_info,) = _items(der, _signed_data_fields(der)[-1], 0x31)  # signerInfos SET OF
    signed = [f for f in _items(der, signer_info) if f[0] == 0xA0]  # [0] IMPLICIT signedAttrs
    if len(signed) != 1:
        raise ValueError("the SignerInfo has no signed attributes")
    attributes = []
    for attribute in _items(der, signed[0], 0xA0):
        oid, values = _items(der, attribute)  # Attribute { attrType, attrValues SET OF }
        if oid[0] != 0x06:
            raise ValueError("an attribute type is not an OBJECT IDENTIFIER")
        found = [der[v[1] : v[3]] for v in _items(der, values, 0x31)]
        attributes.append((der[oid[2] : oid[3]], found))
    return attributes


def _sorted_certificates(der: bytes) -> bytes:
    """The same TimeStampResp with SignedData.certificates sorted as DER wants a SET OF.

    The certificates are outside what the TSA signs, and sorting keeps every length: only
    their order changes. Anything that is not shaped as expected is returned unchanged,
    for the parser to judge."""
    try:
        fields = _signed_data_fields(der)
        certificates = next(f for f in fields if f[0] == 0xA0)  # [0] IMPLICIT SET OF
        items = sorted(der[a:z] for _, a, _, z in _children(der, certificates[2], certificates[3]))
    except (ValueError, IndexError, StopIteration):
        return der
    return der[: certificates[2]] + b"".join(items) + der[certificates[3] :]


def _fail_info(der: bytes) -> list[str]:
    """The PKIFailureInfo bit names in the PKIStatusInfo of a TimeStampResp (RFC 3161
    §2.4.2), which rfc3161-client does not expose."""
    try:
        _, start, end = _tlv(der, 0)
        status_info = _children(der, start, end)[0]
        bits = next(c for c in _children(der, status_info[2], status_info[3]) if c[0] == 0x03)
    except (ValueError, IndexError, StopIteration):
        return []
    value = der[bits[2] + 1 : bits[3]]  # skip the unused-bits octet
    return [
        _FAIL_INFO.get(bit, f"bit {bit}")
        for bit in range(len(value) * 8)
        if value[bit // 8] & (0x80 >> (bit % 8))
    ]


@contextmanager
def _failing_as(check: str) -> Iterator[None]:
    """Re-raise whatever rfc3161-client or cryptography raise as a :class:`TimestampError`
    naming ``check``, including the Rust panics (not an Exception) of malformed input."""
    try:
        yield
    except TimestampError:
        raise
    except BaseException as exc:
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise
        raise TimestampError(f"{check}: {exc}") from exc
