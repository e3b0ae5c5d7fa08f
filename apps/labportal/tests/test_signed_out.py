"""A signed-out case is a record: nothing under it changes until an admin reopens it."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from .fakecluster import FakeCluster
from .helpers import Portal, User, problem
from .test_materials import _case, _uploaded

pytestmark = pytest.mark.asyncio
RECT = {"kind": "rectangle", "points": [[0, 0], [10, 10]], "label": "tumour"}


async def _signed_out(cportal: Portal, fake: FakeCluster) -> dict[str, Any]:
    """A case with a slide, an upload in progress, an annotation and a thread, signed out."""
    owner, member = await cportal.user("owner"), await cportal.user("member")
    team, case = await _case(cportal, owner)
    await cportal.join(owner, team, member, "member")
    blob = hashlib.sha256(os.urandom(16)).hexdigest()
    material = await _uploaded(member, case, fake, blob)
    r = await member.post(f"/api/cases/{case}/materials", json={"name": "b.svs", "size": 100})
    uploading = r.json()["material"]["id"]
    r = await member.post(f"/api/materials/{material}/annotations", json=RECT)
    annotation = r.json()["id"]
    r = await member.post(f"/api/cases/{case}/comments", json={"body": "Carcinoma?"})
    thread = r.json()["id"]
    assert (
        await member.post(f"/api/cases/{case}/status", json={"status": "in_review"})
    ).status_code == 200
    r = await owner.post(f"/api/cases/{case}/status", json={"status": "signed_out"})
    assert r.json()["status"] == "signed_out", r.text
    return {
        "owner": owner,
        "member": member,
        "case": case,
        "blob": blob,
        "material": material,
        "uploading": uploading,
        "annotation": annotation,
        "thread": thread,
    }


def _writes(s: dict[str, Any]) -> list[tuple[str, str, Any]]:
    case, material, annotation, thread = s["case"], s["material"], s["annotation"], s["thread"]
    collection = {"type": "FeatureCollection", "features": []}
    return [  # in an order that also works once reopened (deletions last)
        ("PATCH", f"/api/cases/{case}", {"title": "rewritten"}),
        ("POST", f"/api/cases/{case}/materials", {"name": "c.svs", "size": 100}),
        (
            "POST",
            f"/api/materials/{s['uploading']}/complete",
            {"blob_id": s["blob"], "proof": "0" * 64},
        ),
        ("POST", f"/api/materials/{s['uploading']}/failed", {"reason": "gave up"}),
        ("POST", f"/api/materials/{material}/annotations", RECT),
        ("POST", f"/api/materials/{material}/annotations/geojson", collection),
        ("PATCH", f"/api/annotations/{annotation}", {"label": "benign"}),
        ("DELETE", f"/api/annotations/{annotation}", None),
        ("POST", f"/api/cases/{case}/comments", {"body": "late remark"}),
        ("POST", f"/api/cases/{case}/comments", {"body": "reply", "parent_id": thread}),
        ("PATCH", f"/api/comments/{thread}", {"resolved": True}),
        ("PATCH", f"/api/comments/{thread}", {"body": "Benign."}),
        ("DELETE", f"/api/comments/{thread}", None),
        ("DELETE", f"/api/materials/{material}", None),
    ]


async def _call(user: User, method: str, url: str, body: Any) -> Any:
    return await user.client.request(method, url, json=body)


async def test_every_write_under_a_signed_out_case_is_locked(
    cportal: Portal, fake: FakeCluster
) -> None:
    s = await _signed_out(cportal, fake)
    owner, member = s["owner"], s["member"]
    for method, url, body in _writes(s):
        for who in (member, owner):  # the author and the team's owner alike
            answer = problem(await _call(who, method, url, body), 409)
            assert answer["code"] == "locked", (method, url, answer)
    answer = problem(await owner.delete(f"/api/cases/{s['case']}"), 409)
    assert answer["code"] == "locked"
    assert fake.deleted == []  # the slide's blob never left the cluster
    # Everything is still there and readable; viewing is not a change.
    assert len((await member.get(f"/api/cases/{s['case']}/materials")).json()) == 2
    items = (await member.get(f"/api/materials/{s['material']}/annotations")).json()["items"]
    assert [a["label"] for a in items] == ["tumour"]
    thread = (await member.get(f"/api/cases/{s['case']}/comments")).json()
    assert [(c["body"], c["resolved"]) for c in thread] == [("Carcinoma?", False)]
    assert (await member.post(f"/api/materials/{s['material']}/view")).status_code == 200
    # The one way out: an admin's reopening (a member may not).
    problem(await member.post(f"/api/cases/{s['case']}/status", json={"status": "open"}), 403)
    r = await owner.post(f"/api/cases/{s['case']}/status", json={"status": "open"})
    assert r.status_code == 200 and r.json()["status"] == "open"
    for method, url, body in _writes(s):
        if url.endswith("/complete"):
            continue  # the failed report below settles the upload instead
        r = await _call(member, method, url, body)
        assert r.status_code in (200, 201, 204), (method, url, r.text)
    assert fake.deleted == [s["blob"]]
