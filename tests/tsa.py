"""A real RFC 3161 time-stamping authority for tests: ``openssl ts`` behind a loopback server.

:func:`start_tsa` builds everything from scratch with the ``openssl`` CLI in a directory of its
own: a self-signed root CA, an issuing CA under it, a TSA signing certificate under that (with
the critical ``timeStamping`` extended key usage), two certificates that lack it (no EKU at
all, a non-critical one), and an ``openssl.cnf`` whose ``[tsa]`` section points at them. A
threaded HTTP server on 127.0.0.1 answers each POSTed TimeStampReq by running
``openssl ts -reply`` on it: the time-stamping is openssl's, the HTTP wrapper only transport.

Misbehaviour is chosen per request by the URL path (:meth:`TSA.url_for`), so one TSA shared
by a whole session needs no mutable mode. Two calls give two independent TSAs with unrelated
CAs (a "foreign" TSA for tamper tests).

Without ``openssl`` on PATH the tests that need a TSA are skipped, loudly; with ``CI=true``
they fail instead.
"""

from __future__ import annotations

import enum
import os
import secrets
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import pytest

__all__ = [
    "OTHER_POLICY",
    "POLICY",
    "TSA",
    "Mode",
    "closed_port_url",
    "require_openssl",
    "start_tsa",
]

POLICY = "1.3.6.1.4.1.99999.1"
"""The TSA's default policy (``default_policy`` in its openssl.cnf)."""
OTHER_POLICY = "1.3.6.1.4.1.99999.2"
"""A policy the TSA does not accept: queries asking for it are rejected (unacceptedPolicy)."""

TSTINFO_CONTENT_TYPE = "1.2.840.113549.1.9.16.1.4"  # id-smime-ct-TSTInfo (RFC 3161 §2.4.2)


class Mode(enum.Enum):
    """How the TSA answers a request sent to ``url_for(mode)``."""

    OK = "ok"
    HTTP_500 = "http-500"  # an HTTP 500 with a text body
    OTHER_QUERY = "other-query"  # a genuine, granted reply to a different query
    REJECT = "reject"  # a genuine rejection (the query is swapped for one asking OTHER_POLICY)
    WRONG_TYPE = "wrong-type"  # the genuine reply, sent as text/plain
    OVERSIZED = "oversized"  # 70 KiB of application/timestamp-reply
    GARBAGE = "garbage"  # application/timestamp-reply that is not DER


_CONFIG = """\
[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ root_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[ issuing_ext ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ tsa_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ no_eku_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ soft_eku_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
serial = {dir}/tsaserial
crypto_device = builtin
signer_cert = {dir}/tsa.pem
certs = {dir}/chain.pem
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1, millisecs:500, microsecs:100
clock_precision_digits = 0
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def require_openssl() -> str:
    """The path of the ``openssl`` CLI; skip (or, with ``CI=true``, fail) without it."""
    path = shutil.which("openssl")
    if path is None:
        reason = (
            "openssl CLI NOT FOUND on PATH: the RFC 3161 tests need a real `openssl ts` "
            "time-stamping authority and were NOT run"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


class TSA:
    """One running TSA: its URL, its root CA, and the means to mint odd tokens."""

    def __init__(self, directory: Path, name: str, openssl: str) -> None:
        self.dir, self.name, self._openssl = directory, name, openssl
        self._lock = threading.Lock()  # openssl ts -reply updates the serial file
        self._build_pki()
        self.ca_pem: bytes = (directory / "root.pem").read_bytes()
        self.ca_der: bytes = self._run("x509 -in root.pem -outform DER")
        self.tsa_subject = f"CN={name} TSA,O=Indelible tests"
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.tsa = self  # type: ignore[attr-defined]
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"tsa-{name}", daemon=True
        )
        self._thread.start()

    # ---- PKI, from scratch
    def _run(self, command: str, *args: str) -> bytes:
        """``openssl COMMAND... ARGS...`` in the TSA's directory (``command`` is split on
        spaces; ``args`` are passed as they are); its stdout."""
        argv = [self._openssl, *command.split(), *args]
        done = subprocess.run(argv, cwd=self.dir, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode()}")
        return done.stdout

    def _key(self, name: str) -> None:
        self._run(f"genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {name}.key")

    def _issue(self, name: str, subject: str, issuer: str, extensions: str) -> None:
        self._key(name)
        self._run(f"req -new -config openssl.cnf -key {name}.key -out {name}.csr", "-subj", subject)
        serial = secrets.randbits(63)
        self._run(
            f"x509 -req -in {name}.csr -CA {issuer}.pem -CAkey {issuer}.key -set_serial {serial}"
            f" -days 2 -sha256 -extfile openssl.cnf -extensions {extensions} -out {name}.pem"
        )

    def _build_pki(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "openssl.cnf").write_text(_CONFIG.format(dir=self.dir, policy=POLICY))
        (self.dir / "tsaserial").write_text("01\n")
        org, name = "/O=Indelible tests", self.name
        self._key("root")
        self._run(
            "req -x509 -new -config openssl.cnf -key root.key -days 2 -sha256"
            " -extensions root_ext -out root.pem",
            "-subj",
            f"{org}/CN={name} Root CA",
        )
        self._issue("issuing", f"{org}/CN={name} Issuing CA", "root", "issuing_ext")
        self._issue("tsa", f"{org}/CN={name} TSA", "issuing", "tsa_ext")
        self._issue("no_eku", f"{org}/CN={name} no-EKU", "issuing", "no_eku_ext")
        self._issue("soft_eku", f"{org}/CN={name} soft-EKU", "issuing", "soft_eku_ext")
        chain = (self.dir / "issuing.pem").read_bytes() + (self.dir / "root.pem").read_bytes()
        (self.dir / "chain.pem").write_bytes(chain)
        (self.dir / "other.txt").write_bytes(b"some other bytes than the ones asked about\n")
        self._run("ts -query -data other.txt -sha256 -cert -out other.tsq")
        self._run(
            f"ts -query -data other.txt -sha256 -cert -tspolicy {OTHER_POLICY} -out reject.tsq"
        )

    # ---- the TSA itself
    def reply(self, query: bytes) -> bytes:
        """``openssl ts -reply`` for a DER TimeStampReq: the DER TimeStampResp."""
        stem = secrets.token_hex(8)
        query_file, reply_file = self.dir / f"q-{stem}.tsq", self.dir / f"r-{stem}.tsr"
        query_file.write_bytes(query)
        try:
            with self._lock:
                self._run(
                    "ts -reply -config openssl.cnf"
                    f" -queryfile {query_file.name} -out {reply_file.name}"
                )
            return reply_file.read_bytes()
        finally:
            query_file.unlink(missing_ok=True)
            reply_file.unlink(missing_ok=True)

    def url_for(self, mode: Mode) -> str:
        """The URL at which this TSA answers in ``mode``."""
        return self.url if mode is Mode.OK else f"{self.url}{mode.value}"

    def answer(self, mode: Mode, query: bytes) -> tuple[int, str, bytes]:
        """(HTTP status, content type, body) for one query in ``mode``."""
        reply_type = "application/timestamp-reply"
        if mode is Mode.HTTP_500:
            return 500, "text/plain", b"the TSA is having a bad day\n"
        if mode is Mode.OVERSIZED:
            return 200, reply_type, b"\x30" * (70 * 1024)
        if mode is Mode.GARBAGE:
            return 200, reply_type, b"this is not DER\n"
        if mode is Mode.OTHER_QUERY:
            query = (self.dir / "other.tsq").read_bytes()
        elif mode is Mode.REJECT:
            query = (self.dir / "reject.tsq").read_bytes()
        content_type = "text/plain" if mode is Mode.WRONG_TYPE else reply_type
        return 200, content_type, self.reply(query)

    # ---- tokens no honest openssl TSA would make
    def resign(self, response: bytes, signer: str) -> bytes:
        """The TSTInfo of a genuine ``response``, signed again with ``openssl cms -sign`` by
        the certificate ``signer`` ("tsa", "no_eku" or "soft_eku"; issued by this TSA's
        issuing CA) and wrapped in a granted TimeStampResp. ``openssl ts`` itself refuses to
        sign with a certificate lacking the critical timeStamping EKU."""
        stem = f"resign-{secrets.token_hex(8)}"
        files = [self.dir / f"{stem}.{ext}" for ext in ("tsr", "tok", "tst", "p7")]
        files[0].write_bytes(response)
        tsr, tok, tst, p7 = (file.name for file in files)
        try:
            self._run(f"ts -reply -in {tsr} -token_out -out {tok}")
            self._run(f"cms -verify -noverify -binary -inform DER -in {tok} -out {tst}")
            self._run(
                "cms -sign -binary -nodetach -nosmimecap -md sha256"
                f" -econtent_type {TSTINFO_CONTENT_TYPE} -in {tst} -signer {signer}.pem"
                f" -inkey {signer}.key -certfile issuing.pem -outform DER -out {p7}"
            )
            token = files[3].read_bytes()
        finally:
            for file in files:
                file.unlink(missing_ok=True)
        granted = _der(0x30, _der(0x02, b"\x00"))  # PKIStatusInfo { status granted }
        return _der(0x30, granted + token)

    # ---- lifecycle
    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TSA:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        tsa: TSA = self.server.tsa  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        query = self.rfile.read(length)
        path = self.path.strip("/")
        try:
            mode = Mode(path) if path else Mode.OK
        except ValueError:
            self._send(404, "text/plain", b"no such mode\n")
            return
        if self.headers.get_content_type() != "application/timestamp-query":
            self._send(415, "text/plain", b"send application/timestamp-query\n")
            return
        try:
            status, content_type, body = tsa.answer(mode, query)
        except RuntimeError as exc:  # openssl could not answer (e.g. not a TimeStampReq)
            status, content_type, body = 400, "text/plain", str(exc).encode()
        self._send(status, content_type, body)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def start_tsa(directory: Path, name: str = "test") -> TSA:
    """Build a fresh PKI and TSA in ``directory`` (created) and start serving on loopback.

    Use as ``with start_tsa(tmp, "foreign") as tsa:`` or call :meth:`TSA.stop` yourself.
    """
    return TSA(directory, name, require_openssl())
