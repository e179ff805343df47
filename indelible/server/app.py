"""The ASGI application: routes, error handlers, metrics, and the runtime's life cycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from indelible.server import admin, api, evidence, reads, tlog
from indelible.server.errors import install_error_handlers
from indelible.server.fastpath import IngestFastPath
from indelible.server.metrics import Metrics, MetricsMiddleware, metrics_endpoint
from indelible.server.runtime import Runtime

__all__ = ["create_app"]


def create_app(runtime: Runtime) -> FastAPI:
    """The HTTP service for ``runtime``'s tenants.

    The lifespan starts the runtime and, once the server has finished its in-flight requests,
    closes it: each sequencer drains, then a final checkpoint is signed for each log.
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
        summary="A tamper-evident audit trail you run yourself.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    metrics = Metrics(runtime)
    app.state.runtime = runtime
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(reads.router)
    app.include_router(admin.router)
    app.include_router(evidence.router)
    app.include_router(tlog.router)
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    if runtime.ui.enabled:
        from indelible.server import ui  # Jinja2 (the ui extra) only when the UI is served

        ui.install(app, runtime)
    app.add_middleware(IngestFastPath)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts both paths
    return app
