"""The server's own log lines: control characters escaped, so no input can forge a line.

Events may hold CR, LF and ANSI escapes verbatim (an audit trail keeps what it was given);
when any such text reaches a log message (a path, a header, an error), it is written with
:func:`~indelible.core.tabular.escape_control`, the escaping CSV export uses: a log reader's
terminal never interprets it and a newline in input never starts a fake log line.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from indelible.core.tabular import escape_control

__all__ = ["EscapeControl", "log_config"]


class EscapeControl(logging.Filter):
    """Rewrites each record's message with its control characters escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_control(message)
        if escaped is not message:
            record.msg, record.args = escaped, None
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging set-up, with the escaping filter on every handler and Indelible's
    own loggers (``indelible.*``) written beside uvicorn's."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"escape_control": {"()": EscapeControl}}
    for handler in config["handlers"].values():
        handler["filters"] = ["escape_control"]
    config["loggers"]["indelible"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
