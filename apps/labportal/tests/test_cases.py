"""Cases: creation, edits, workflow, filters and pagination, audit trail, access."""

from __future__ import annotations

import uuid

import pytest

from .helpers import Portal, User, problem

pytestmark = pytest.mark.asyncio


async def _setup(portal: Portal) -> tuple[str, dict[str, User]]:
    people = {role: await portal.user(role) for role in ("owner", "admin", "member", "viewer")}
    team = await portal.team(people["owner"], "Cases")
    for role in ("admin", "member", "viewer"):
        await portal.join(people["owner"], team, people[role], role)
    people["outsider"] = await portal.user("outsider")
    return team, people


async def _case(user: User, team: str, **fields: object) -> dict:  # type: ignore[type-arg]
    r = await user.post(f"/api/teams/{team}/cases", json={"title": "A case", **fields})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_create_validates_fields(portal: Portal) -> None:
    team, p = await _setup(portal)
    member = p["member"]
    case = await _case(
        member,
        team,
        description="Liver\nbiopsy",
        tags=["HE", "he", "Liver"],
        assignee_id=p["admin"].id,
    )
    assert case["status"] == "open" and case["tags"] == ["he", "liver"]
    assert case["assignee"]["id"] == p["admin"].id and case["created_by"]["id"] == member.id
    assert case["allowed_transitions"] == ["in_review"]
    for payload, message in [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title must not be blank"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "tags": ["a" * 51]}, "tags"),
        ({"title": "ok", "tags": [" "]}, "tag must not be blank"),
        ({"title": "ok", "description": "nul\x00"}, "control characters"),
        ({"title": "ok", "assignee_id": "nope"}, "assignee_id"),
        ({"title": "ok", "status": "signed_out", "extra": 1}, None),
    ]:
        r = await member.post(f"/api/teams/{team}/cases", json=payload)
        if message is None:  # unknown fields are ignored, the status always starts open
            assert r.status_code == 201 and r.json()["status"] == "open"
            continue
        assert message in problem(r, 400)["detail"]
    # Viewers cannot be assigned, nor can outsiders.
    for who in ("viewer", "outsider"):
        body = problem(
            await member.post(
                f"/api/teams/{team}/cases", json={"title": "x", "assignee_id": p[who].id}
            ),
            422,
        )
        assert body["code"] == "invalid_assignee"


async def test_access_rules(portal: Portal) -> None:
    team, p = await _setup(portal)
    case = await _case(p["member"], team)
    url = f"/api/cases/{case['id']}"
    out, viewer = p["outsider"], p["viewer"]
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"title": "x"}),
        ("DELETE", "", None),
        ("POST", "/status", {"status": "in_review"}),
        ("GET", "/events", None),
        ("GET", "/comments", None),
        ("POST", "/comments", {"body": "hi"}),
    ]:
        assert (
            problem(await out.client.request(method, url + suffix, json=body), 404)["detail"]
            == "no such case"
        )
    problem(await out.get(f"/api/cases/{uuid.uuid4()}"), 404)
    assert (await viewer.get(url)).status_code == 200
    assert (await viewer.get(url + "/events")).status_code == 200
    for method, suffix, body in [
        ("PATCH", "", {"title": "x"}),
        ("DELETE", "", None),
        ("POST", "/status", {"status": "in_review"}),
        ("POST", "/comments", {"body": "hi"}),
    ]:
        problem(await viewer.client.request(method, url + suffix, json=body), 403)
    problem(await p["member"].delete(url), 403)
    assert (await p["admin"].delete(url)).status_code == 204
    problem(await p["admin"].get(url), 404)


async def test_workflow(portal: Portal) -> None:
    team, p = await _setup(portal)
    member, admin = p["member"], p["admin"]
    case = await _case(member, team)
    url = f"/api/cases/{case['id']}/status"
    body = problem(await member.post(url, json={"status": "signed_out"}), 409)
    assert body["code"] == "invalid_transition" and body["allowed"] == ["in_review"]
    assert "cannot go from open to signed_out" in body["detail"]
    problem(await member.post(url, json={"status": "archived"}), 400)
    r = await member.post(url, json={"status": "in_review", "note": "ready"})
    assert r.status_code == 200 and r.json()["status"] == "in_review"
    assert r.json()["allowed_transitions"] == ["open", "signed_out"]
    assert "admin" in problem(await member.post(url, json={"status": "signed_out"}), 403)["detail"]
    assert (await admin.post(url, json={"status": "signed_out"})).json()["status"] == "signed_out"
    # Signed out: read-only until an admin reopens it.
    locked = problem(await member.patch(f"/api/cases/{case['id']}", json={"title": "new"}), 409)
    assert locked["code"] == "locked"
    problem(await member.post(url, json={"status": "open"}), 403)
    problem(await admin.post(url, json={"status": "in_review"}), 409)
    assert (await admin.post(url, json={"status": "open"})).json()["status"] == "open"
    assert (
        await member.patch(f"/api/cases/{case['id']}", json={"title": "new"})
    ).status_code == 200


async def test_audit_trail(portal: Portal) -> None:
    team, p = await _setup(portal)
    member, admin = p["member"], p["admin"]
    case = await _case(member, team, tags=["liver"])
    cid = case["id"]
    r = await member.patch(
        f"/api/cases/{cid}",
        json={
            "title": "Renamed",
            "tags": ["kidney", "liver"],
            "assignee_id": admin.id,
            "description": "",  # unchanged: not recorded
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["assignee"]["id"] == admin.id
    await admin.patch(f"/api/cases/{cid}", json={"assignee_id": None})
    await member.patch(f"/api/cases/{cid}", json={"title": "Renamed"})  # no change, no event
    await member.post(f"/api/cases/{cid}/status", json={"status": "in_review", "note": "look"})
    events = (await p["viewer"].get(f"/api/cases/{cid}/events")).json()
    assert [e["action"] for e in events] == ["created", "updated", "updated", "status_changed"]
    assert [e["actor"]["id"] for e in events] == [member.id, member.id, admin.id, member.id]
    assert events[1]["changes"] == {
        "title": {"from": "A case", "to": "Renamed"},
        "tags": {"from": ["liver"], "to": ["kidney", "liver"]},
        "assignee": {"from": None, "to": {"id": admin.id, "display_name": "Admin"}},
    }
    assert events[2]["changes"] == {
        "assignee": {"from": {"id": admin.id, "display_name": "Admin"}, "to": None}
    }
    assert events[3]["changes"] == {"status": {"from": "open", "to": "in_review"}, "note": "look"}
    assert all(e["created_at"] for e in events)


async def test_filters_and_pagination(portal: Portal) -> None:
    team, p = await _setup(portal)
    member, admin = p["member"], p["admin"]
    other_team = await portal.team(member, "Elsewhere")
    await _case(member, other_team, title="Not here", tags=["liver"])
    made = []
    for i in range(7):
        made.append(
            await _case(
                member,
                team,
                title=f"Case {i} {'liver' if i % 2 else 'skin'}",
                tags=["liver"] if i % 2 else ["skin", "100%"],
                assignee_id=admin.id if i < 3 else None,
            )
        )
    await member.post(f"/api/cases/{made[0]['id']}/status", json={"status": "in_review"})
    url = f"/api/teams/{team}/cases"

    async def ids(**params: object) -> list[str]:
        r = await p["viewer"].get(url, params=params)
        assert r.status_code == 200, r.text
        return [c["title"] for c in r.json()["items"]]

    page = (await p["viewer"].get(url, params={"limit": 3})).json()
    assert page["total"] == 7 and page["limit"] == 3 and len(page["items"]) == 3
    assert page["items"][0]["title"] == made[0]["title"]  # most recently changed first
    everything = []
    for offset in (0, 3, 6):
        everything += await ids(limit=3, offset=offset)
    assert len(everything) == 7 and len(set(everything)) == 7
    assert await ids(offset=7) == []
    assert await ids(status="in_review") == [made[0]["title"]]
    assert sorted(await ids(tag="LIVER")) == sorted(c["title"] for c in made[1::2])
    assert len(await ids(assignee=admin.id)) == 3
    assert len(await ids(assignee="none")) == 4
    r = await admin.get(url, params={"assignee": "me"})
    assert r.json()["total"] == 3
    assert sorted(await ids(q="SKIN")) == sorted(c["title"] for c in made[0::2])
    assert await ids(q="%") == [] and await ids(tag="100%") != []
    assert len(await ids(q="liver", assignee=admin.id)) == 1
    for bad in [
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"status": "closed"},
        {"assignee": "someone"},
        {"q": "x" * 201},
        {"q": "a\x00"},
    ]:
        problem(await p["viewer"].get(url, params=bad), 400)
