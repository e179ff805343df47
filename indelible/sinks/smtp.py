"""E-mail sink: one plain-text message per alert over SMTP.

The ``Message-ID`` is derived from the alert id, so a message sent again after a crash is
recognisable as the same alert. ``starttls: true`` upgrades the connection, ``tls: true``
connects with TLS from the start; ``username`` with ``password_env`` logs in.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import orjson

from indelible.service.alerts.delivery import DeliveryFailed
from indelible.sinks.options import SinkOptions

__all__ = ["EmailSink", "email_message"]


def _header_text(value: Any) -> str:
    """Text safe in a header: event values reach the subject, and a line break there would
    let an event add headers (recipients) of its own."""
    return "".join(char if char.isprintable() else " " for char in str(value))[:300]


def email_message(alert: Mapping[str, Any], sender: str, to: list[str]) -> EmailMessage:
    message = EmailMessage()
    severity = _header_text(alert.get("severity") or "alert").upper()
    group = _header_text(alert.get("group") or "")
    message["Subject"] = f"[Indelible] [{severity}] {_header_text(alert.get('title'))}" + (
        f" — {group}" if group else ""
    )
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(usegmt=True)
    alert_id = _header_text(alert.get("alert_id"))
    message["Message-ID"] = f"<{alert_id}@alerts.indelible>"
    message["X-Indelible-Alert-Id"] = alert_id
    details = orjson.dumps(alert, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    message.set_content(
        f"{alert.get('title')}\n\nrule: {alert.get('rule')}\nseverity: {severity}\n"
        f"group: {group or '-'}\nlog: {alert.get('log')}, seq {alert.get('seq')}\n"
        f"fired at: {alert.get('fired_at')}\n\n{details}\n"
    )
    return message


class EmailSink:
    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        sender: str,
        to: list[str],
        starttls: bool = False,
        tls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._host, self._port, self._sender, self._to = host, port, sender, to
        self._starttls, self._tls, self._timeout = starttls, tls, timeout
        self._username, self._password = username, password

    @classmethod
    def from_options(
        cls, name: str, options: Mapping[str, Any], environ: Mapping[str, str]
    ) -> EmailSink:
        known = {"host", "port", "from", "to", "starttls", "tls", "username", "password_env"}
        read = SinkOptions(name, options, known | {"timeout"})
        to = read.required("to", (str, list))
        recipients = [to] if isinstance(to, str) else to
        if not recipients or not all(isinstance(item, str) and "@" in item for item in recipients):
            read.fail("to must be an address or a list of addresses")
        username = read.get("username", str)
        password = read.secret("password_env", environ, required=username is not None)
        return cls(
            name,
            host=read.required("host"),
            port=int(read.get("port", int, 25)),
            sender=read.required("from"),
            to=list(recipients),
            starttls=bool(read.get("starttls", bool, False)),
            tls=bool(read.get("tls", bool, False)),
            username=username,
            password=password,
            timeout=float(read.get("timeout", (int, float), 10)),
        )

    def send(self, alert_id: str, body: bytes, alert: Mapping[str, Any]) -> None:
        message = email_message(alert, self._sender, self._to)
        try:
            if self._tls:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self._host,
                    self._port,
                    timeout=self._timeout,
                    context=ssl.create_default_context(),
                )
            else:
                client = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
            with client:
                if self._starttls:
                    client.starttls(context=ssl.create_default_context())
                if self._username is not None and self._password is not None:
                    client.login(self._username, self._password)
                refused = client.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(
                f"SMTP {self._host}:{self._port}: {type(exc).__name__}: {exc}"
            ) from None
        if refused:
            raise DeliveryFailed(f"recipients refused: {', '.join(sorted(refused))}")

    def close(self) -> None:
        """Each message uses a connection of its own: nothing to close."""
