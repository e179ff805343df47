"""The ASGI application: routes, error handlers, and the runtime's life cycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from indelible.server.api import router
from indelible.server.errors import install_error_handlers
from indelible.server.runtime import Runtime

__all__ = ["create_app"]


def create_app(runtime: Runtime) -> FastAPI:
    """The HTTP service for ``runtime``'s log.

    The lifespan starts the runtime and, once the server has finished its in-flight requests,
    closes it: the sequencer drains, then a final checkpoint is signed.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(runtime.start)
        try:
            yield
        finally:
            await run_in_threadpool(runtime.close)

    app = FastAPI(
        title="Indelible",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(router)
    return app
