"""Slack-compatible incoming webhook: ``{"text": …}`` POSTed to the webhook URL.

The URL of an incoming webhook is itself the secret: give it in an environment variable
(``url_env``). Mattermost, Rocket.Chat and Microsoft Teams' Slack-compatible endpoints take
the same message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from indelible.sinks.options import SinkOptions
from indelible.sinks.webhook import USER_AGENT, post

__all__ = ["SlackSink", "slack_message"]


def slack_message(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The message for one alert: severity, title, group, the log and seq, the rule."""
    severity = str(alert.get("severity") or "alert").upper()
    group = alert.get("group") or ""
    data = alert.get("data") if isinstance(alert.get("data"), dict) else {}
    assert isinstance(data, dict)
    lines = [f"*[{severity}] {alert.get('title')}*" + (f" — {group}" if group else "")]
    detail = data.get("message") or data.get("description")
    if detail:
        lines.append(str(detail))
    lines.append(
        f"rule `{alert.get('rule')}` · log `{alert.get('log')}` · seq {alert.get('seq')} · "
        f"alert `{alert.get('alert_id')}`"
    )
    return {"text": "\n".join(lines)}


class SlackSink:
    def __init__(self, name: str, url: str, *, timeout: float = 10.0) -> None:
        self.name, self._url = name, url
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    @classmethod
    def from_options(
        cls, name: str, options: Mapping[str, Any], environ: Mapping[str, str]
    ) -> SlackSink:
        read = SinkOptions(name, options, {"url", "url_env", "timeout"})
        url = read.secret("url_env", environ, required=False) or read.required("url")
        if not url.startswith(("http://", "https://")):
            read.fail("url must be an http:// or https:// URL")
        return cls(name, url, timeout=float(read.get("timeout", (int, float), 10)))

    def send(self, alert_id: str, body: bytes, alert: Mapping[str, Any]) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        post(self._client, self._url, orjson.dumps(slack_message(alert)), headers)

    def close(self) -> None:
        self._client.close()
