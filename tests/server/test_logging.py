"""The server's log lines escape control characters, so input cannot forge or colour them."""

from __future__ import annotations

import io
import logging
import logging.config

from indelible.core.tabular import unescape_control
from indelible.server.logsetup import EscapeControl, log_config


def test_every_handler_escapes_and_indelible_loggers_are_written() -> None:
    config = log_config()
    assert config["handlers"] and all(
        handler["filters"] == ["escape_control"] for handler in config["handlers"].values()
    )
    assert config["loggers"]["indelible"]["handlers"] == ["default"]


def test_a_message_with_crlf_and_ansi_escapes_stays_one_inert_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(EscapeControl())
    logger = logging.getLogger("indelible.test.escape")
    logger.addHandler(handler)
    logger.propagate = False
    hostile = "INV-1\r\nERROR: forged line \x1b[2J\x1b]0;title\x07"
    try:
        logger.warning("could not read %s", hostile)
        logger.warning("plain %d", 7)
    finally:
        logger.removeHandler(handler)
    first, second = stream.getvalue().splitlines()
    assert "\x1b" not in first and "\r" not in first
    assert unescape_control(first) == f"could not read {hostile}"
    assert second == "plain 7"
