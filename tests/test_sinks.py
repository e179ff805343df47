"""Sinks built from rules-file options: every mistake named, secrets from the environment and
never in messages, signatures, and e-mail headers that event values cannot extend."""

from __future__ import annotations

from typing import Any

import pytest

from indelible.core.rules import SinkSpec
from indelible.errors import ConfigError
from indelible.service.alerts.delivery import Retry
from indelible.sinks import build_sink, sign, verify_signature
from indelible.sinks.slack import slack_message
from indelible.sinks.smtp import email_message


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("webhook", {}, "url is required"),
        ("webhook", {"url": "ftp://x"}, "url must be an http"),
        ("webhook", {"url": "http://x", "retries": 3}, "unknown option 'retries'"),
        ("webhook", {"url": "http://x", "timeout": "soon"}, "timeout must be"),
        ("webhook", {"url": "http://x", "timeout": True}, "timeout must be"),
        (
            "webhook",
            {"url": "http://x", "secret_env": "NOT_SET"},
            r"NOT_SET \(its secret_env\) is not set",
        ),
        ("slack", {"url_env": "NOT_SET"}, r"NOT_SET \(its url_env\) is not set"),
        ("slack", {"url": "mailto:x"}, "url must be an http"),
        ("email", {"host": "h", "from": "a@x"}, "to is required"),
        ("email", {"host": "h", "from": "a@x", "to": ["nobody"]}, "to must be an address"),
        (
            "email",
            {"host": "h", "from": "a@x", "to": "b@x", "username": "u"},
            "password_env is required",
        ),
        ("email", {"from": "a@x", "to": "b@x"}, "host is required"),
    ],
)
def test_sink_options_are_checked(kind: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build_sink(SinkSpec("s", kind, options), {"SECRET": "never-shown"})
    assert caught.value.details()["setting"] == "alert_rules"
    assert "never-shown" not in caught.value.message


def test_sinks_are_built_and_retry_policies_read() -> None:
    env = {"HOOK": "k", "SLACK": "https://hooks.example/T/B/x", "PW": "p"}
    for kind, options in (
        ("webhook", {"url": "http://x", "secret_env": "HOOK", "timeout": 3}),
        ("slack", {"url_env": "SLACK"}),
        (
            "email",
            {
                "host": "h",
                "port": 465,
                "tls": True,
                "from": "a@x",
                "to": "b@x",
                "username": "u",
                "password_env": "PW",
            },
        ),
    ):
        sink = build_sink(SinkSpec("s", kind, {**options, "max_attempts": 3}), env)
        assert sink.name == "s"
        sink.close()
    retry = Retry.of(
        SinkSpec("s", "slack", {"max_attempts": 3, "backoff": "2s", "max_backoff": "5s"})
    )
    assert retry.max_attempts == 3
    assert [retry.delay_ms(n) for n in (1, 2, 3, 4)] == [2000, 4000, 5000, 5000]
    for bad in ({"max_attempts": 0}, {"backoff": "x"}):
        with pytest.raises(ConfigError, match="sink s"):
            Retry.of(SinkSpec("s", "slack", bad))


def test_signatures_cover_the_timestamp_and_the_exact_body() -> None:
    body = b'{"alert_id":"a"}'
    headers = {"Indelible-Timestamp": "1000", "Indelible-Signature": sign(b"k", "1000", body)}
    assert verify_signature(b"k", headers, body, now=1100)
    assert not verify_signature(b"k", headers, body + b" ", now=1100)
    assert not verify_signature(b"k", headers, body, now=1000 + 301)  # too old: a replay
    assert not verify_signature(b"k", {**headers, "Indelible-Timestamp": "999"}, body, now=1000)
    assert not verify_signature(b"k", {}, body, now=1000)


ALERT = {
    "alert_id": "a-1",
    "title": "Refund spike",
    "severity": "high",
    "rule": "r",
    "group": "data.note=x\r\nBcc: evil@example.com",
    "log": "acme",
    "seq": 4,
    "data": {},
}


def test_event_values_cannot_add_e_mail_headers() -> None:
    message = email_message(ALERT, "alerts@example.com", ["ops@example.com"])
    assert message["Bcc"] is None
    assert (
        message["Subject"] == "[Indelible] [HIGH] Refund spike — data.note=x  Bcc: evil@example.com"
    )
    assert message["To"] == "ops@example.com"


def test_slack_messages_name_the_alert() -> None:
    text = slack_message({**ALERT, "group": "", "data": {"message": "the store is full"}})["text"]
    assert text.splitlines() == [
        "*[HIGH] Refund spike*",
        "the store is full",
        "rule `r` · log `acme` · seq 4 · alert `a-1`",
    ]
