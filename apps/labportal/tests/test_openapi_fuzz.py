"""Schemathesis over the portal's OpenAPI on a real process (both backends): no 5xx, and every
4xx is a problem-details document. Generation is steered towards ids that exist."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation

from labportal.app import create_app
from labportal.settings import Settings

from .helpers import PASSWORD
from .server import ServerProcess

DOCUMENT = create_app(Settings(database_url="sqlite:///unused.sqlite3")).openapi_schema.to_schema()
CASES = [
    (method.upper(), path, mode)
    for path, item in DOCUMENT["paths"].items()
    for method in item
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
]


@pytest.fixture(scope="session")
def seeded(server: ServerProcess) -> dict[str, str]:
    """A user with an all-scopes token, a team, a case, a comment and an invitation."""
    with httpx.Client(base_url=server.url) as c:
        c.post(
            "/api/auth/register",
            json={"email": "fuzz@example.org", "password": PASSWORD, "display_name": "Fuzz"},
        )
        r = c.post("/api/auth/login", json={"email": "fuzz@example.org", "password": PASSWORD})
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        scopes = ["teams:read", "teams:write", "cases:read", "cases:write"]
        token = c.post("/api/tokens", json={"name": "fuzz", "scopes": scopes}).json()
        team = c.post("/api/teams", json={"name": "Fuzz team"}).json()["id"]
        case = c.post(f"/api/teams/{team}/cases", json={"title": "Fuzz case"}).json()["id"]
        comment = c.post(f"/api/cases/{case}/comments", json={"body": "hi"}).json()["id"]
        invite = c.post(f"/api/teams/{team}/invitations", json={}).json()
        return {
            "auth": f"Bearer {token['token']}",
            "team_id": team,
            "case_id": case,
            "comment_id": comment,
            "invitation_id": invite["id"],
            "token": invite["token"],
            "token_id": token["id"],
            "user_id": r.json()["user"]["id"],
            # Ids of no material, annotation or task: operations on them answer 404.
            "material_id": "00000000-0000-4000-8000-000000000001",
            "annotation_id": "00000000-0000-4000-8000-000000000002",
            "task_id": "00000000-0000-4000-8000-000000000003",
        }


@pytest.fixture(scope="session")
def api_schema(server: ServerProcess) -> Any:
    document = httpx.get(server.url + "/schema/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=server.url, request_timeout=30)
    return schema


@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES]
)
def test_no_server_errors(
    api_schema: Any, seeded: dict[str, str], method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode)
    names = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
    if names and method != "DELETE" and mode is GenerationMode.POSITIVE:
        # Existing ids (never for DELETE: the other operations need them).
        pinned = operation.as_strategy(
            generation_mode=mode, path_parameters={n: seeded[n] for n in names}
        )
        strategy = st.one_of(strategy, pinned, pinned)
    auth = {"Authorization": seeded["auth"]}

    @given(case=strategy)
    @settings(
        max_examples=15 if mode is GenerationMode.POSITIVE else 6,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        broken = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
        headers = {} if broken and "Authorization" in (case.headers or {}) else auth
        response = case.call(headers=headers)
        where = f"{case.method} {case.formatted_path} q={case.query} body={case.body!r:.300}"
        assert response.status_code < 500, (
            f"{where} -> {response.status_code}: {response.text[:500]}"
        )
        if response.status_code >= 400 and case.method != "HEAD":
            content_type = " ".join(response.headers.get("content-type", []))
            assert content_type.startswith("application/problem+json"), (where, content_type)
            body = response.json()
            assert body["status"] == response.status_code and body["detail"], (where, body)

    check()
