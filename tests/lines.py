"""Reading what a child process prints, line by line, from a thread of the test."""

from __future__ import annotations

import threading
from collections.abc import Iterable


def read_lines(stream: Iterable[str], lines: list[str], ready: threading.Event) -> None:
    """Append each non-empty line of ``stream`` to ``lines`` as it comes; a line ``ready``
    sets ``ready`` instead. Returns when the stream ends (the process exited)."""
    for line in stream:
        text = line.strip()
        if text == "ready":
            ready.set()
        elif text:
            lines.append(text)
