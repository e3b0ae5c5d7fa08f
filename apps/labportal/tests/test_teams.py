"""Teams and roles: visibility (non-members get 404), who may change what (403)."""

from __future__ import annotations

import uuid

import pytest

from .helpers import Portal, User, problem

pytestmark = pytest.mark.asyncio


async def _team_with_roles(portal: Portal) -> tuple[str, dict[str, User]]:
    people = {role: await portal.user(role) for role in ("owner", "admin", "member", "viewer")}
    team = await portal.team(people["owner"], "Pathology")
    for role in ("admin", "member", "viewer"):
        await portal.join(people["owner"], team, people[role], role)
    people["outsider"] = await portal.user("outsider")
    return team, people


async def test_create_list_and_members(portal: Portal) -> None:
    team, p = await _team_with_roles(portal)
    r = await p["owner"].get("/api/teams")
    assert [(t["id"], t["role"]) for t in r.json()] == [(team, "owner")]
    assert (await p["viewer"].get(f"/api/teams/{team}")).json()["role"] == "viewer"
    members = (await p["member"].get(f"/api/teams/{team}/members")).json()
    assert sorted(m["role"] for m in members) == ["admin", "member", "owner", "viewer"]
    problem(await p["owner"].post("/api/teams", json={"name": ""}), 400)
    problem(await p["owner"].post("/api/teams", json={"name": "x" * 101}), 400)


async def test_non_members_see_nothing(portal: Portal) -> None:
    team, p = await _team_with_roles(portal)
    out = p["outsider"]
    assert (await out.get("/api/teams")).json() == []
    for method, url, body in [
        ("GET", f"/api/teams/{team}", None),
        ("PATCH", f"/api/teams/{team}", {"name": "mine"}),
        ("DELETE", f"/api/teams/{team}", None),
        ("GET", f"/api/teams/{team}/members", None),
        ("GET", f"/api/teams/{team}/invitations", None),
        ("POST", f"/api/teams/{team}/invitations", {"role": "member"}),
        ("POST", f"/api/teams/{team}/leave", None),
        ("GET", f"/api/teams/{team}/cases", None),
        ("POST", f"/api/teams/{team}/cases", {"title": "x"}),
    ]:
        body = problem(await out.client.request(method, url, json=body), 404)
        assert body["detail"] == "no such team"
    # An unknown id looks exactly the same.
    problem(await out.get(f"/api/teams/{uuid.uuid4()}"), 404)
    problem(await out.get("/api/teams/not-a-uuid"), 404)


async def test_viewer_and_member_cannot_manage(portal: Portal) -> None:
    team, p = await _team_with_roles(portal)
    for who in ("viewer", "member"):
        user = p[who]
        problem(await user.patch(f"/api/teams/{team}", json={"name": "x"}), 403)
        problem(await user.post(f"/api/teams/{team}/invitations", json={"role": "viewer"}), 403)
        problem(await user.get(f"/api/teams/{team}/invitations"), 403)
        target = p["member"] if who == "viewer" else p["viewer"]
        problem(await user.delete(f"/api/teams/{team}/members/{target.id}"), 403)
        problem(await user.delete(f"/api/teams/{team}"), 403)
    body = problem(await p["viewer"].post(f"/api/teams/{team}/cases", json={"title": "x"}), 403)
    assert "viewer" in body["detail"]


async def test_admin_versus_owner_powers(portal: Portal) -> None:
    team, p = await _team_with_roles(portal)
    admin, owner = p["admin"], p["owner"]
    r = await admin.patch(f"/api/teams/{team}", json={"description": "Liver biopsies"})
    assert r.status_code == 200 and r.json()["description"] == "Liver biopsies"
    # Admins manage members and viewers, but cannot create admins or touch the owner.
    r = await admin.patch(f"/api/teams/{team}/members/{p['viewer'].id}", json={"role": "member"})
    assert r.status_code == 200 and r.json()["role"] == "member"
    problem(
        await admin.patch(f"/api/teams/{team}/members/{p['member'].id}", json={"role": "admin"}),
        403,
    )
    problem(await admin.post(f"/api/teams/{team}/invitations", json={"role": "admin"}), 403)
    problem(
        await admin.patch(f"/api/teams/{team}/members/{owner.id}", json={"role": "viewer"}), 409
    )
    problem(await admin.delete(f"/api/teams/{team}/members/{owner.id}"), 409)
    problem(await admin.delete(f"/api/teams/{team}"), 403)
    problem(
        await admin.patch(f"/api/teams/{team}/members/{p['member'].id}", json={"role": "owner"}),
        400,
    )
    # The owner can.
    r = await owner.patch(f"/api/teams/{team}/members/{p['member'].id}", json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    # Now two admins: neither can remove the other.
    problem(await admin.delete(f"/api/teams/{team}/members/{p['member'].id}"), 403)
    problem(
        await owner.patch(f"/api/teams/{team}/members/{uuid.uuid4()}", json={"role": "viewer"}), 404
    )


async def test_remove_leave_transfer(portal: Portal) -> None:
    team, p = await _team_with_roles(portal)
    owner, admin = p["owner"], p["admin"]
    assert (await admin.delete(f"/api/teams/{team}/members/{p['viewer'].id}")).status_code == 204
    problem(await p["viewer"].get(f"/api/teams/{team}"), 404)
    assert (await p["member"].post(f"/api/teams/{team}/leave")).status_code == 204
    problem(await p["member"].get(f"/api/teams/{team}"), 404)
    body = problem(await owner.post(f"/api/teams/{team}/leave"), 409)
    assert "transfer ownership" in body["detail"]
    problem(await admin.post(f"/api/teams/{team}/transfer", json={"user_id": admin.id}), 403)
    problem(
        await owner.post(f"/api/teams/{team}/transfer", json={"user_id": p["outsider"].id}), 404
    )
    r = await owner.post(f"/api/teams/{team}/transfer", json={"user_id": admin.id})
    assert r.status_code == 200 and r.json()["role"] == "owner"
    roles = {
        m["user_id"]: m["role"] for m in (await admin.get(f"/api/teams/{team}/members")).json()
    }
    assert roles == {admin.id: "owner", owner.id: "admin"}
    assert (await owner.post(f"/api/teams/{team}/leave")).status_code == 204
    assert (await admin.delete(f"/api/teams/{team}")).status_code == 204
    problem(await admin.get(f"/api/teams/{team}"), 404)
