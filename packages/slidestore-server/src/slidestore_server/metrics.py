"""Prometheus metrics and the pure-ASGI middleware that records them.

Pure ASGI (not BaseHTTPMiddleware) because it sits on the tile path: it adds one
``perf_counter`` pair and a dict lookup per request, nothing that copies bodies.
Routes are labelled by endpoint name (the router writes the endpoint into the scope),
never by raw path, so label cardinality stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.registry = registry
        self.requests = Counter(
            f"{prefix}_http_requests_total",
            "HTTP requests",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_http_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{prefix}_http_in_flight", "requests being served", registry=registry
        )
        # Labelled children by (route, method, status): ``labels()`` takes a lock and
        # builds a key each call, measurable at thousands of tiles per second.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", None) or "unmatched"
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - start)


class CallbackCollector(Collector):
    """Gauges computed at scrape time from the node's live state."""

    def __init__(self, gauges: Callable[[], Iterable[tuple[str, str, float]]]) -> None:
        self.gauges = gauges

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, doc, value in self.gauges():
            yield GaugeMetricFamily(name, doc, value=value)


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return endpoint
