"""Cross-cutting: every API route is authenticated, readiness reports its checks, errors are
problem details (also for a crash)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from litestar import get

from labportal.app import create_app
from labportal.errors import PROBLEM_JSON
from slidestore import tokens
from slidestore_server.testing import CoordinatorProcess

from .conftest import portal_settings
from .helpers import Portal, problem

pytestmark = pytest.mark.asyncio
OPEN = {"/api/auth/register", "/api/auth/login", "/api/auth/token"}  # credentials in the body


async def test_every_api_route_needs_credentials(portal: Portal) -> None:
    client = portal.client()
    checked = 0
    for route in portal.app.routes:
        if not route.path.startswith("/api/") or route.path in OPEN:
            continue
        path = re.sub(r"\{(\w+):uuid\}", "00000000-0000-4000-8000-000000000000", route.path)
        path = re.sub(r"\{(\w+):str\}", "abc", path)
        path = re.sub(r"\{(\w+):int\}", "1", path)
        for method in route.methods - {"HEAD", "OPTIONS"}:
            body = problem(await client.request(method, path, json={}), 401)
            assert body["code"] == "unauthorized", (method, path)
            checked += 1
    assert checked >= 30


async def test_readyz_reports_an_unreachable_coordinator(database_url: str) -> None:
    settings = portal_settings(database_url, coordinator_url="http://127.0.0.1:9")
    async with Portal.running(settings) as portal:
        r = await portal.client().get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["database"] == "ok"
        assert r.json()["checks"]["coordinator"].startswith("error")


async def test_unexpected_errors_are_problem_details(database_url: str) -> None:
    @get("/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("secret internals")

    app = create_app(portal_settings(database_url))
    app.register(boom)
    portal = Portal(app, app.state.settings)
    r = await portal.client().get("/boom")
    assert r.status_code == 500 and r.headers["content-type"].startswith(PROBLEM_JSON)
    assert "secret internals" not in r.text and r.json()["code"] == "internal_error"
    r = await portal.client().post(
        "/api/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert problem(r, 400)["code"] == "bad_request"
    r = await portal.client().put("/api/teams", json={})
    assert problem(r, 405)["code"] == "method_not_allowed"


async def test_readyz_reports_a_cluster_without_reachable_nodes(
    database_url: str, tmp_path: Path
) -> None:
    secret = tokens.new_secret()
    with CoordinatorProcess(tmp_path / "coordinator", settings={"secret": secret}) as coordinator:
        settings = portal_settings(database_url, cluster_url=coordinator.url, cluster_secret=secret)
        async with Portal.running(settings) as portal:
            r = await portal.client().get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["coordinator"] == "ok" and checks["nodes"] == "error: no live storage node"


async def test_metrics_need_the_metrics_token(database_url: str) -> None:
    async with Portal.running(portal_settings(database_url)) as portal:
        assert problem(await portal.client().get("/metrics"), 404)["code"] == "not_found"
    token = "m3trics-" + "x" * 24
    async with Portal.running(portal_settings(database_url, metrics_token=token)) as portal:
        client = portal.client()
        user = await portal.user("someone")
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {token}"},
            {"Authorization": f"Bearer {token}x"},
        ):
            r = await client.get("/metrics", headers=headers)
            assert problem(r, 401)["code"] == "invalid_token", headers
            assert r.headers["www-authenticate"] == "Bearer"
        problem(await user.get("/metrics"), 401)  # a user's session is not an operator's token
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and "labportal_http_requests_total" in r.text
        # The metrics token opens nothing else.
        r = await client.get("/api/teams", headers={"Authorization": f"Bearer {token}"})
        assert problem(r, 401)["code"] == "invalid_token"
