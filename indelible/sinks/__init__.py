"""Notification sinks: the senders of alerts, built from the rules file's ``sinks``.

=========  ================================================================================
webhook    POST of the alert JSON, HMAC-SHA256 signed with a timestamp (``webhook``)
slack      a Slack-compatible incoming-webhook message ``{"text": …}`` (``slack``)
email      a plain-text e-mail over SMTP, optionally STARTTLS or TLS and a login (``smtp``)
=========  ================================================================================

Secrets are never written in the rules file: it names the environment variable that holds
each (``secret_env``, ``url_env``, ``password_env``), read by :func:`build_sink` from the
mapping the entry point passes in. Error messages never include a secret or a secret URL.
"""

from __future__ import annotations

from collections.abc import Mapping

from indelible.core.rules import SinkSpec
from indelible.service.alerts.delivery import Sink
from indelible.sinks.slack import SlackSink
from indelible.sinks.smtp import EmailSink
from indelible.sinks.webhook import WebhookSink, sign, verify_signature

__all__ = ["EmailSink", "SlackSink", "WebhookSink", "build_sink", "sign", "verify_signature"]

# options every sink takes: the delivery policy, read by the service (delivery.Retry)
RETRY_OPTIONS = frozenset({"max_attempts", "backoff", "max_backoff"})


def build_sink(spec: SinkSpec, environ: Mapping[str, str]) -> Sink:
    """The sender ``spec`` describes; ``ConfigError`` names what is wrong (never a secret)."""
    options = {k: v for k, v in spec.options.items() if k not in RETRY_OPTIONS}
    if spec.type == "webhook":
        return WebhookSink.from_options(spec.name, options, environ)
    if spec.type == "slack":
        return SlackSink.from_options(spec.name, options, environ)
    return EmailSink.from_options(spec.name, options, environ)
