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


HOSTILE_NEXT = [
    "/%09/evil.example",
    "/%0d/evil.example",
    "/%0a/evil.example",
    "/\t/evil.example",
    "/\r/evil.example",
    "/\n/evil.example",
    "/ /evil.example",
    "//evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "/%5Cevil.example",
    "https://evil.example",
    "evil.example",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "/%252F%252Fevil.example",  # decoded twice
    "/%25252F%25252Fevil.example",
    "/teams\x00",
    "/teams%00",
    "/teams\u2028",
    "/x?next=//evil.example",
    None,
    "",
]
GOOD_NEXT = ["/", "/teams", "/cases/1?x=2", "/teams/abc/cases?tag=liver&q=kidney", "/a%41b"]


def test_next_is_local_only() -> None:
    for good in GOOD_NEXT:
        assert _safe_next(good) == good
    for evil in HOSTILE_NEXT:
        assert _safe_next(evil) == "/", evil


@pytest.mark.asyncio
async def test_login_page_never_redirects_off_site(portal: Portal) -> None:
    client = portal.client()
    for evil in HOSTILE_NEXT:
        if evil is None:
            continue
        for page in ("/login", "/register"):
            r = await client.get(page, params={"next": evil})
            assert r.status_code == 200
            assert 'data-redirect="/"' in r.text, (page, evil)
    # The raw query the attacker sent: a tab the browser would strip.
    r = await client.get("/login?next=/%09/host")
    assert 'data-redirect="/"' in r.text
    r = await client.get("/login?next=/cases/1")
    assert 'data-redirect="/cases/1"' in r.text


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
    assert "Look at the glomeruli" in detail and ">Send for review</button>" in detail
    assert "Owner opened the case “Kidney”" in detail  # the history, as a sentence
    assert ">Send for review</button>" not in (await viewer.get(f"/cases/{case['id']}")).text
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
