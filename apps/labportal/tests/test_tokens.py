"""Personal API tokens: scopes, expiry, revocation; session-only endpoints."""

from __future__ import annotations

import datetime
import uuid

import pytest
from sqlalchemy import update

from labportal.domain.accounts.models import ApiToken

from .helpers import Portal, problem

pytestmark = pytest.mark.asyncio


async def _token(portal: Portal, user, scopes: list[str], **extra) -> dict:  # type: ignore[no-untyped-def]
    r = await user.post("/api/tokens", json={"name": "script", "scopes": scopes, **extra})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_token_scopes(portal: Portal) -> None:
    alice = await portal.user("alice")
    team = await portal.team(alice)
    read = await _token(portal, alice, ["cases:read", "teams:read"])
    assert read["token"].startswith("lpt_") and read["prefix"] == read["token"][:10]
    bare = portal.client()
    auth = {"Authorization": f"Bearer {read['token']}"}
    assert (await bare.get("/api/teams", headers=auth)).status_code == 200
    assert (await bare.get(f"/api/teams/{team}/cases", headers=auth)).status_code == 200
    # No CSRF needed with a token, but the write scope is.
    body = problem(
        await bare.post(f"/api/teams/{team}/cases", json={"title": "x"}, headers=auth), 403
    )
    assert body["code"] == "insufficient_scope" and "cases:write" in body["detail"]
    write = await _token(portal, alice, ["cases:write"])
    auth_w = {"Authorization": f"Bearer {write['token']}"}
    r = await bare.post(f"/api/teams/{team}/cases", json={"title": "x"}, headers=auth_w)
    assert r.status_code == 201, r.text
    problem(await bare.get(f"/api/teams/{team}/cases", headers=auth_w), 403)
    # Tokens cannot manage tokens or passwords (browser session only).
    problem(await bare.get("/api/tokens", headers=auth), 403)
    problem(
        await bare.post("/api/tokens", json={"name": "n", "scopes": ["cases:read"]}, headers=auth),
        403,
    )
    me = await bare.get("/api/auth/me", headers=auth)
    assert me.status_code == 200 and me.json()["csrf_token"] is None


async def test_token_validation(portal: Portal) -> None:
    alice = await portal.user("alice")
    for payload in [
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["admin"]},
        {"name": "x", "scopes": ["cases:read"], "expires_in_days": 0},
        {"name": "x", "scopes": ["cases:read"], "expires_in_days": 366},
        {"name": " ", "scopes": ["cases:read"]},
    ]:
        problem(await alice.post("/api/tokens", json=payload), 400)


async def test_bad_expired_and_revoked_tokens(portal: Portal) -> None:
    alice = await portal.user("alice")
    token = await _token(portal, alice, ["teams:read"])
    bare = portal.client()
    auth = {"Authorization": f"Bearer {token['token']}"}
    assert (await bare.get("/api/teams", headers=auth)).status_code == 200
    listed = (await alice.get("/api/tokens")).json()
    assert [t["id"] for t in listed] == [token["id"]] and "token" not in listed[0]
    assert listed[0]["last_used_at"] is not None
    for header in ["Bearer lpt_unknown", "Basic abc", "Bearer"]:
        body = problem(await bare.get("/api/teams", headers={"Authorization": header}), 401)
        assert body["code"] == "invalid_token"
    # Expire it in the database.
    async with portal.session() as session:
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
        await session.execute(
            update(ApiToken).where(ApiToken.id == uuid.UUID(token["id"])).values(expires_at=past)
        )
        await session.commit()
    body = problem(await bare.get("/api/teams", headers=auth), 401)
    assert body["code"] == "token_expired"
    # Revoke: gone for good.
    other = await _token(portal, alice, ["teams:read"])
    assert (await alice.delete(f"/api/tokens/{other['id']}")).status_code == 204
    problem(
        await bare.get("/api/teams", headers={"Authorization": f"Bearer {other['token']}"}), 401
    )
    bob = await portal.user("bob")
    problem(await bob.delete(f"/api/tokens/{token['id']}"), 404)  # not his
