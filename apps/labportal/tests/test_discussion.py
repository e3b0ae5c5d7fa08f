"""Comment threads on a case: replies, resolve/reopen, edit and delete rights."""

from __future__ import annotations

import uuid

import pytest

from .helpers import Portal, problem
from .test_cases import _case, _setup

pytestmark = pytest.mark.asyncio


async def test_threads_and_resolution(portal: Portal) -> None:
    team, p = await _setup(portal)
    member, admin, viewer = p["member"], p["admin"], p["viewer"]
    case = await _case(member, team)
    url = f"/api/cases/{case['id']}/comments"
    root = (await member.post(url, json={"body": "Is this a carcinoma?"})).json()
    assert root["parent_id"] is None and root["resolved"] is False
    reply = await admin.post(url, json={"body": "Yes", "parent_id": root["id"]})
    assert reply.status_code == 201 and reply.json()["parent_id"] == root["id"]
    body = problem(await member.post(url, json={"body": "x", "parent_id": reply.json()["id"]}), 422)
    assert body["code"] == "invalid_parent"
    problem(await member.post(url, json={"body": "x", "parent_id": str(uuid.uuid4())}), 422)
    problem(await member.post(url, json={"body": "   "}), 400)
    problem(await member.post(url, json={"body": ""}), 400)
    listed = (await viewer.get(url)).json()
    assert [c["id"] for c in listed] == [root["id"], reply.json()["id"]]

    problem(await viewer.patch(f"/api/comments/{root['id']}", json={"resolved": True}), 403)
    r = await admin.patch(f"/api/comments/{root['id']}", json={"resolved": True})
    assert r.status_code == 200 and r.json()["resolved"] is True
    assert r.json()["resolved_by"]["id"] == admin.id and r.json()["resolved_at"]
    body = problem(
        await admin.patch(f"/api/comments/{reply.json()['id']}", json={"resolved": True}), 422
    )
    assert body["code"] == "not_a_thread"
    r = await member.patch(f"/api/comments/{root['id']}", json={"resolved": False})
    assert r.json()["resolved"] is False and r.json()["resolved_by"] is None
    actions = [e["action"] for e in (await viewer.get(f"/api/cases/{case['id']}/events")).json()]
    assert actions == [
        "created",
        "comment_added",
        "comment_added",
        "thread_resolved",
        "thread_reopened",
    ]


async def test_edit_and_delete_rights(portal: Portal) -> None:
    team, p = await _setup(portal)
    member, admin, owner = p["member"], p["admin"], p["owner"]
    case = await _case(member, team)
    url = f"/api/cases/{case['id']}/comments"
    mine = (await member.post(url, json={"body": "first"})).json()
    problem(await admin.patch(f"/api/comments/{mine['id']}", json={"body": "edited"}), 403)
    r = await member.patch(f"/api/comments/{mine['id']}", json={"body": "edited"})
    assert r.json()["body"] == "edited"
    theirs = (await owner.post(url, json={"body": "owner's"})).json()
    problem(await member.delete(f"/api/comments/{theirs['id']}"), 403)
    assert (await admin.delete(f"/api/comments/{theirs['id']}")).status_code == 204
    assert (await member.delete(f"/api/comments/{mine['id']}")).status_code == 204
    assert (await member.get(url)).json() == []
    problem(await p["outsider"].patch(f"/api/comments/{mine['id']}", json={"body": "x"}), 404)
    problem(await member.delete(f"/api/comments/{uuid.uuid4()}"), 404)
