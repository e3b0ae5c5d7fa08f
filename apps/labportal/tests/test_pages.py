"""The server-rendered pages: login redirects, what each role sees, the same 404s as the API."""

from __future__ import annotations

import re
import uuid

import pytest

from labportal.web.pages import _safe_next

from .helpers import Portal


@pytest.mark.asyncio
async def test_pages_need_a_session(portal: Portal) -> None:
    client = portal.client()
    r = await client.get("/teams")
    assert r.status_code in (302, 303) and r.headers["location"] == "/login?next=%2Fteams"
    r = await client.get("/login?next=/teams")
    assert r.status_code == 200 and 'data-api="/api/auth/login"' in r.text
    assert 'data-redirect="/teams"' in r.text
    assert (await client.get("/static/portal.js")).status_code == 200


def test_next_is_local_only() -> None:
    assert _safe_next("/cases/1?x=2") == "/cases/1?x=2"
    for evil in ["//evil.example", "https://evil.example", "/\\evil.example", None, ""]:
        assert _safe_next(evil) == "/teams"


@pytest.mark.asyncio
async def test_team_case_and_invitation_pages(portal: Portal) -> None:
    owner, viewer, outsider = [await portal.user(n) for n in ("owner", "viewer", "outsider")]
    team = await portal.team(owner, "Renal <b>team</b>")
    await portal.join(owner, team, viewer, "viewer")
    r = await owner.get("/teams")
    assert "Renal &lt;b&gt;team&lt;/b&gt;" in r.text  # escaped
    assert re.search(r'<meta name="csrf-token" content="[\w-]+">', r.text)
    page = (await owner.get(f"/teams/{team}")).text
    assert 'id="invite-form"' in page and "Viewer" in page
    assert 'id="invite-form"' not in (await viewer.get(f"/teams/{team}")).text
    case = (
        await owner.post(f"/api/teams/{team}/cases", json={"title": "Kidney", "tags": ["renal"]})
    ).json()
    await owner.post(f"/api/cases/{case['id']}/comments", json={"body": "Look at the glomeruli"})
    listing = (await viewer.get(f"/teams/{team}/cases?tag=renal")).text
    assert "Kidney" in listing and 'id="case-form"' not in listing
    assert "Kidney" not in (await viewer.get(f"/teams/{team}/cases?tag=other")).text
    detail = (await owner.get(f"/cases/{case['id']}")).text
    assert "Look at the glomeruli" in detail and "Move to in_review" in detail
    assert "created" in detail  # the history
    assert "Move to in_review" not in (await viewer.get(f"/cases/{case['id']}")).text
    for url in (
        f"/teams/{team}",
        f"/teams/{team}/cases",
        f"/cases/{case['id']}",
        f"/cases/{uuid.uuid4()}",
    ):
        assert (await outsider.get(url)).status_code == 404
    invite = (await owner.post(f"/api/teams/{team}/invitations", json={})).json()
    page = await outsider.get(f"/invitations/{invite['token']}")
    assert page.status_code == 200 and "/accept" in page.text and "Renal" in page.text
