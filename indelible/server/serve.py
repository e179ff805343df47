"""Running the HTTP service under uvicorn (one worker: one sequencer owns the log).

On SIGTERM or SIGINT uvicorn stops accepting connections, lets in-flight requests finish,
then runs the lifespan shutdown, which drains the sequencer and signs a final checkpoint.
:func:`serve` then returns normally, so the process exits 0 after a clean shutdown.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from indelible.errors import IndelibleError
from indelible.server.app import create_app
from indelible.server.logsetup import log_config
from indelible.server.runtime import Runtime

__all__ = ["serve", "url_for"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def url_for(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def _stop_on_signal(server: uvicorn.Server) -> Iterator[None]:
    """While uvicorn serves it handles these signals itself; afterwards it raises each one
    again for the previous handler. The handler here asks the server to stop (covering a
    signal that arrives before uvicorn listens) and otherwise lets ``serve`` return."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(runtime: Runtime, host: str, port: int, forwarded_allow_ips: str = "") -> None:
    """Serve ``runtime``'s tenants on ``host:port`` until a signal ends it cleanly.

    ``X-Forwarded-For`` is believed only from ``forwarded_allow_ips``: the client address is
    what failed-authentication limits count and what audit events record, so by default it
    is the TCP peer, which no header can change."""
    config = uvicorn.Config(
        create_app(runtime),
        host=host,
        port=port,
        workers=1,
        lifespan="on",
        server_header=False,
        access_log=False,
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or None,
        log_config=log_config(),
        log_level="info",
    )
    server = uvicorn.Server(config)
    with _stop_on_signal(server):
        server.run()
    if not server.started:
        raise IndelibleError(f"the HTTP service did not start on {url_for(host, port)}")
