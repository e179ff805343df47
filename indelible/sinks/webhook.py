"""Webhook sink: the alert JSON POSTed to a URL, signed with HMAC-SHA256.

Request headers:

- ``Indelible-Alert-Id`` and ``Idempotency-Key``: the alert's id (a retry sends the same);
- ``Indelible-Timestamp``: Unix seconds when this attempt was signed;
- ``Indelible-Signature``: ``v1=`` and the hex HMAC-SHA256, keyed with the shared secret,
  of ``<timestamp>.`` followed by the exact body bytes.

A receiver recomputes the signature over the raw body (:func:`verify_signature`), compares
in constant time and refuses timestamps older than its tolerance (replays). Any 2xx answer
is a delivery; anything else, or no answer within ``timeout``, is a failure to retry.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from indelible.service.alerts.delivery import DeliveryFailed
from indelible.sinks.options import SinkOptions

__all__ = ["WebhookSink", "post", "sign", "verify_signature"]

USER_AGENT = "Indelible-Alerts/1"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``Indelible-Signature`` header value for ``body`` sent at ``timestamp``."""
    return "v1=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = 300.0,
) -> bool:
    """Whether ``body`` with these headers was signed with ``secret`` within ``tolerance``
    seconds of ``now`` (what a receiver checks)."""
    timestamp = headers.get("indelible-timestamp") or headers.get("Indelible-Timestamp") or ""
    given = headers.get("indelible-signature") or headers.get("Indelible-Signature") or ""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), given)


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> None:
    """POST and require a 2xx answer; failures never name the URL (it may be a secret)."""
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        text = str(exc).replace(url, "<url>") or type(exc).__name__
        raise DeliveryFailed(f"{type(exc).__name__}: {text}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"the receiver answered HTTP {response.status_code}")


class WebhookSink:
    """POSTs each alert's JSON to ``url``; see the module docstring for the headers."""

    def __init__(
        self,
        name: str,
        url: str,
        secret: bytes | None,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name, self._url, self._secret, self._clock = name, url, secret, clock
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    @classmethod
    def from_options(
        cls, name: str, options: Mapping[str, Any], environ: Mapping[str, str]
    ) -> WebhookSink:
        read = SinkOptions(name, options, {"url", "url_env", "secret_env", "timeout"})
        url = read.secret("url_env", environ, required=False) or read.required("url")
        if not url.startswith(("http://", "https://")):
            read.fail("url must be an http:// or https:// URL")
        secret = read.secret("secret_env", environ, required=False)
        timeout = float(read.get("timeout", (int, float), 10))
        return cls(name, url, secret.encode() if secret else None, timeout=timeout)

    def send(self, alert_id: str, body: bytes, alert: Mapping[str, Any]) -> None:
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Indelible-Alert-Id": alert_id,
            "Idempotency-Key": alert_id,
            "Indelible-Timestamp": timestamp,
        }
        if self._secret is not None:
            headers["Indelible-Signature"] = sign(self._secret, timestamp, body)
        post(self._client, self._url, body, headers)

    def close(self) -> None:
        self._client.close()
