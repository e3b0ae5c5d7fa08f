"""A small Prometheus text-format registry and the middleware that feeds it."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.duration_buckets: dict[tuple[str, str], list[int]] = defaultdict(
            lambda: [0] * len(BUCKETS)
        )
        self.duration_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.duration_count: dict[tuple[str, str], int] = defaultdict(int)
        self.in_flight = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, str(status))] += 1
        key = (method, route)
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.duration_buckets[key][i] += 1
        self.duration_sum[key] += seconds
        self.duration_count[key] += 1

    def render(self) -> str:
        def labels(**kv: str) -> str:
            escaped = (
                f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                for k, v in kv.items()
            )
            return "{" + ",".join(escaped) + "}"

        out = [
            "# HELP labportal_http_requests_total HTTP requests by method, route and status.",
            "# TYPE labportal_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(
                f"labportal_http_requests_total{labels(method=method, route=route, status=status)} {n}"
            )
        out += [
            "# HELP labportal_http_request_duration_seconds Request latency.",
            "# TYPE labportal_http_request_duration_seconds histogram",
        ]
        for (method, route), counts in sorted(self.duration_buckets.items()):
            for bound, n in zip(BUCKETS, counts, strict=True):
                lab = labels(method=method, route=route, le=str(bound))
                out.append(f"labportal_http_request_duration_seconds_bucket{lab} {n}")
            total = self.duration_count[(method, route)]
            lab = labels(method=method, route=route, le="+Inf")
            out.append(f"labportal_http_request_duration_seconds_bucket{lab} {total}")
            lab = labels(method=method, route=route)
            out.append(
                f"labportal_http_request_duration_seconds_sum{lab} {self.duration_sum[(method, route)]}"
            )
            out.append(f"labportal_http_request_duration_seconds_count{lab} {total}")
        out += [
            "# HELP labportal_http_requests_in_flight Requests being served.",
            "# TYPE labportal_http_requests_in_flight gauge",
            f"labportal_http_requests_in_flight {self.in_flight}",
        ]
        return "\n".join(out) + "\n"


def observability_middleware(app: ASGIApp) -> ASGIApp:
    """Count and time every HTTP request, and log one structured line for it."""
    import logging

    log = logging.getLogger("labportal.access")

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        metrics: Metrics = scope["litestar_app"].state.metrics
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.in_flight += 1
        try:
            await app(scope, receive, send_wrapper)
        finally:
            metrics.in_flight -= 1
            elapsed = time.perf_counter() - start
            route = scope.get("path_template") or "<unmatched>"
            metrics.observe(scope["method"], route, status, elapsed)
            extra: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            }
            log.info("request", extra={"fields": extra})

    return middleware
