"""Prometheus metrics (``GET /metrics``): requests, latency, ingest, queue depth, auth failures.

Labels carry routes and statuses only, never a tenant, key or address: the endpoint is
unauthenticated (scraped from inside the operator's network) and tells nothing about whose
events are in which log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from indelible.server.runtime import Runtime

if TYPE_CHECKING:
    from indelible.service.alerts.engine import AlertEngine

__all__ = ["Metrics", "MetricsMiddleware"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per application (tests run many in one process)."""

    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "indelible_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "indelible_http_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.ingested = Counter(
            "indelible_events_ingested",
            "Client events acknowledged (durably committed).",
            registry=self.registry,
        )
        pending = Gauge(
            "indelible_ingest_pending_events",
            "Events waiting for a group commit, all logs together.",
            registry=self.registry,
        )
        pending.set_function(lambda: float(_pending(runtime)))
        tenants = Gauge("indelible_tenants", "Tenants (logs) served.", registry=self.registry)
        tenants.set_function(lambda: float(len(runtime.hub.logs())))
        ready = Gauge("indelible_ready", "1 when /readyz answers 200.", registry=self.registry)
        ready.set_function(lambda: 0.0 if runtime.not_ready() else 1.0)
        if runtime.alerts is not None:
            _alert_gauges(runtime, self.registry)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _alert_gauges(runtime: Runtime, registry: CollectorRegistry) -> None:
    """The alert engine's lag, alerts fired and deliveries by status (docs/alerts.md)."""
    engine = runtime.alerts
    assert engine is not None
    lag = Gauge(
        "indelible_alert_lag_entries",
        "Entries not yet evaluated by the alert rules, all logs together.",
        registry=registry,
    )
    lag.set_function(lambda: float(engine.lag()))
    fired = Gauge(
        "indelible_alerts_fired",
        "Alerts recorded by the rules since this process started, all logs together.",
        registry=registry,
    )
    fired.set_function(lambda: float(sum(item["fired"] for item in engine.status().values())))
    deliveries = Gauge(
        "indelible_alert_deliveries",
        "Alert deliveries to notification sinks by status (dead: dead letters), all logs.",
        ["status"],
        registry=registry,
    )
    for status in ("pending", "delivered", "dead"):
        deliveries.labels(status).set_function(_delivery_count(engine, status))


def _delivery_count(engine: AlertEngine, status: str) -> Callable[[], float]:
    return lambda: float(engine.deliveries().get(status, 0))


def _pending(runtime: Runtime) -> int:
    return sum(log.sequencer.pending_events for log in runtime.hub.logs())


class MetricsMiddleware:
    """Counts every HTTP response by the route template that answered it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            if method not in _METHODS:
                method = "other"  # a client-chosen string must not make a new series
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - started)
            state = scope.get("state")
            if status == 201 and template == "/v1/events" and state:
                self.metrics.ingested.inc(state.get("ingested", 0))


async def metrics_endpoint(request: Request) -> Response:
    metrics = request.app.state.metrics
    assert isinstance(metrics, Metrics)
    return metrics.render()
