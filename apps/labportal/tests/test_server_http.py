"""The portal as a real process over HTTP: migrate-on-start, health, the cookie/CSRF flow."""

from __future__ import annotations

import json
import re

import httpx

from .conftest import METRICS_TOKEN
from .helpers import PASSWORD
from .server import ServerProcess


def test_health_ready_metrics_openapi(server: ServerProcess) -> None:
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz")
    checks = {"database": "ok", "coordinator": "ok", "nodes": "ok", "dask": "ok"}
    assert ready.status_code == 200 and ready.json()["checks"] == checks
    doc = httpx.get(server.url + "/schema/openapi.json").json()
    assert doc["info"]["title"] == "labportal" and "/api/teams/{team_id}/cases" in doc["paths"]
    assert httpx.get(server.url + "/metrics").status_code == 401
    auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    metrics = httpx.get(server.url + "/metrics", headers=auth)
    assert metrics.headers["content-type"].startswith("text/plain")
    assert re.search(
        r'labportal_http_requests_total\{method="GET",route="/readyz",status="200"\} \d+',
        metrics.text,
    )
    assert "labportal_http_request_duration_seconds_bucket" in metrics.text
    missing = httpx.get(server.url + "/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


def test_structured_request_logs(server: ServerProcess) -> None:
    httpx.get(server.url + "/healthz?probe=1")
    lines = [
        json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
    ]
    access = [e for e in lines if e.get("logger") == "labportal.access" and e["path"] == "/healthz"]
    assert access and access[-1]["status"] == 200 and access[-1]["duration_ms"] >= 0
    assert access[-1]["route"] == "/healthz" and access[-1]["level"] == "info"


def test_browser_flow_with_cookie_and_csrf(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as browser:
        r = browser.post(
            "/api/auth/register",
            json={"email": "real@example.org", "password": PASSWORD, "display_name": "Real"},
        )
        assert r.status_code == 202 and "set-cookie" not in r.headers, r.text
        r = browser.post(
            "/api/auth/login", json={"email": "real@example.org", "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        csrf = r.json()["csrf_token"]
        # A cross-site form post carries the cookie but cannot know the CSRF token.
        forged = browser.post("/api/teams", json={"name": "Forged"})
        assert forged.status_code == 403 and forged.json()["code"] == "csrf_failed"
        r = browser.post("/api/teams", json={"name": "Real team"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201, r.text
        assert [t["name"] for t in browser.get("/api/teams").json()] == ["Real team"]
        assert browser.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert browser.get("/api/teams").status_code == 401
        # Logging in again gives a new session with a new CSRF token; the old one is dead.
        r = browser.post(
            "/api/auth/login", json={"email": "real@example.org", "password": PASSWORD}
        )
        assert r.status_code == 200 and r.json()["csrf_token"] != csrf
        stale = browser.post("/api/teams", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
        assert stale.status_code == 403
