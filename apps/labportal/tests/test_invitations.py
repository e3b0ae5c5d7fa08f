"""Invitation links: accept, decline, revoke, expiry, e-mail binding."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest
from sqlalchemy import update

from labportal.domain.teams.models import Invitation

from .conftest import portal_settings
from .helpers import Portal, User, problem

pytestmark = pytest.mark.asyncio


async def test_invite_accept(portal: Portal) -> None:
    owner, guest = await portal.user("owner"), await portal.user("guest")
    team = await portal.team(owner, "Histo")
    r = await owner.post(f"/api/teams/{team}/invitations", json={"role": "viewer"})
    assert r.status_code == 201, r.text
    invite = r.json()
    assert invite["url"] == f"http://127.0.0.1:8000/invitations/{invite['token']}"
    assert invite["status"] == "pending" and invite["team_name"] == "Histo"
    preview = await guest.get(f"/api/invitations/{invite['token']}")
    assert preview.status_code == 200 and "token" not in preview.json()
    r = await guest.post(f"/api/invitations/{invite['token']}/accept")
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert (await guest.get(f"/api/teams/{team}")).json()["role"] == "viewer"
    body = problem(await guest.post(f"/api/invitations/{invite['token']}/accept"), 409)
    assert body["code"] == "invitation_accepted"
    listed = (await owner.get(f"/api/teams/{team}/invitations")).json()
    assert [i["status"] for i in listed] == ["accepted"]
    problem(await guest.get("/api/invitations/unknown-token"), 404)


async def test_already_member(portal: Portal) -> None:
    owner = await portal.user("owner")
    team = await portal.team(owner)
    token = (await owner.post(f"/api/teams/{team}/invitations", json={})).json()["token"]
    assert (
        problem(await owner.post(f"/api/invitations/{token}/accept"), 409)["code"]
        == "already_member"
    )


async def test_decline_and_revoke(portal: Portal) -> None:
    owner, guest = await portal.user("owner"), await portal.user("guest")
    team = await portal.team(owner)
    first = (await owner.post(f"/api/teams/{team}/invitations", json={})).json()
    r = await guest.post(f"/api/invitations/{first['token']}/decline")
    assert r.status_code == 200 and r.json()["status"] == "declined"
    problem(await guest.post(f"/api/invitations/{first['token']}/accept"), 409)
    problem(await guest.get(f"/api/teams/{team}"), 404)

    second = (await owner.post(f"/api/teams/{team}/invitations", json={})).json()
    r = await owner.delete(f"/api/teams/{team}/invitations/{second['id']}")
    assert r.status_code == 204
    assert (
        problem(await guest.post(f"/api/invitations/{second['token']}/accept"), 409)["code"]
        == "invitation_revoked"
    )
    problem(await owner.delete(f"/api/teams/{team}/invitations/{second['id']}"), 409)
    problem(await owner.delete(f"/api/teams/{team}/invitations/{uuid.uuid4()}"), 404)
    # Another team's admin cannot revoke it through their own team.
    other = await portal.team(guest)
    third = (await owner.post(f"/api/teams/{team}/invitations", json={})).json()
    problem(await guest.delete(f"/api/teams/{other}/invitations/{third['id']}"), 404)


async def test_expired_invitation(portal: Portal) -> None:
    owner, guest = await portal.user("owner"), await portal.user("guest")
    team = await portal.team(owner)
    r = await owner.post(f"/api/teams/{team}/invitations", json={"expires_in_hours": 1})
    invite = r.json()
    expires = datetime.datetime.fromisoformat(invite["expires_at"])
    assert (
        datetime.timedelta(minutes=59)
        < expires - datetime.datetime.now(datetime.UTC)
        <= datetime.timedelta(hours=1)
    )
    async with portal.session() as session:
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
        await session.execute(
            update(Invitation)
            .where(Invitation.id == uuid.UUID(invite["id"]))
            .values(expires_at=past)
        )
        await session.commit()
    assert (
        problem(await guest.post(f"/api/invitations/{invite['token']}/accept"), 410)["code"]
        == "invitation_expired"
    )
    problem(await guest.post(f"/api/invitations/{invite['token']}/decline"), 410)
    assert (await guest.get(f"/api/invitations/{invite['token']}")).json()["status"] == "expired"
    problem(await guest.get(f"/api/teams/{team}"), 404)
    problem(await owner.post(f"/api/teams/{team}/invitations", json={"expires_in_hours": 0}), 400)


async def test_invitation_bound_to_email(portal: Portal) -> None:
    owner, guest, intruder = [await portal.user(n) for n in ("owner", "guest", "intruder")]
    team = await portal.team(owner)
    r = await owner.post(f"/api/teams/{team}/invitations", json={"email": guest.email.upper()})
    invite = r.json()
    assert invite["email"] == guest.email
    problem(await intruder.post(f"/api/invitations/{invite['token']}/accept"), 403)
    assert (await guest.post(f"/api/invitations/{invite['token']}/accept")).status_code == 200
    problem(await owner.post(f"/api/teams/{team}/invitations", json={"email": "bad"}), 400)


async def test_a_link_admits_exactly_one_of_concurrent_accepts(portal: Portal) -> None:
    owner = await portal.user("owner")
    team = await portal.team(owner)
    guests = [await portal.user(f"guest{i}") for i in range(6)]
    token = (await owner.post(f"/api/teams/{team}/invitations", json={})).json()["token"]
    answers = await asyncio.gather(*(g.post(f"/api/invitations/{token}/accept") for g in guests))
    assert sorted(r.status_code for r in answers) == [200] + [409] * 5, [r.text for r in answers]
    for r in answers:
        if r.status_code == 409:
            assert problem(r, 409)["code"] == "invitation_accepted"
    members = (await owner.get(f"/api/teams/{team}/members")).json()
    assert len(members) == 2
    # A decline racing the accepts of the next link: still one answer in all.
    token = (await owner.post(f"/api/teams/{team}/invitations", json={})).json()["token"]
    outsiders = [g for g in guests if g.id not in {m["user_id"] for m in members}]
    answers = await asyncio.gather(
        *(
            g.post(f"/api/invitations/{token}/{'decline' if i % 2 else 'accept'}")
            for i, g in enumerate(outsiders)
        )
    )
    assert sorted(r.status_code for r in answers) == [200] + [409] * 4, [r.text for r in answers]
    assert len((await owner.get(f"/api/teams/{team}/members")).json()) in (2, 3)


async def test_a_link_dies_with_its_creators_right_to_invite(portal: Portal) -> None:
    owner, admin, guest, other = [
        await portal.user(n) for n in ("owner", "admin", "guest", "other")
    ]
    team = await portal.team(owner)
    await portal.join(owner, team, admin, "admin")

    async def link(by: User, **body: object) -> str:
        r = await by.post(f"/api/teams/{team}/invitations", json=body)
        assert r.status_code == 201, r.text
        return r.json()["token"]  # type: ignore[no-any-return]

    # Demoted: the admin's links stop working.
    demoted = await link(admin, role="member")
    r = await owner.patch(f"/api/teams/{team}/members/{admin.id}", json={"role": "member"})
    assert r.status_code == 200, r.text
    body = problem(await guest.post(f"/api/invitations/{demoted}/accept"), 410)
    assert body["code"] == "invitation_invalid" and "no longer valid" in body["detail"]
    problem(await guest.get(f"/api/teams/{team}"), 404)

    # Removed: he cannot come back with a link he made for himself, nor let anyone else in.
    await owner.patch(f"/api/teams/{team}/members/{admin.id}", json={"role": "admin"})
    own = await link(admin, role="viewer")
    spare = await link(admin, role="viewer")
    assert (await owner.delete(f"/api/teams/{team}/members/{admin.id}")).status_code == 204
    assert problem(await admin.post(f"/api/invitations/{own}/accept"), 410)["code"] == (
        "invitation_invalid"
    )
    problem(await admin.get(f"/api/teams/{team}"), 404)
    problem(await other.post(f"/api/invitations/{spare}/accept"), 410)
    # The owner's link is unaffected.
    fresh = await link(owner, role="viewer")
    assert (await guest.post(f"/api/invitations/{fresh}/accept")).status_code == 200


async def test_invitation_link_ignores_the_host_header(database_url: str) -> None:
    for base, public in (("", "http://127.0.0.1:8000"), ("https://lab.example.org/", "")):
        public = public or base.rstrip("/")
        settings = portal_settings(database_url, base_url=base)
        async with Portal.running(settings) as portal:
            owner = await portal.user("owner")
            team = await portal.team(owner)
            r = await owner.post(
                f"/api/teams/{team}/invitations",
                json={},
                headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
            )
            assert r.status_code == 201, r.text
            url = r.json()["url"]
            assert url == f"{public}/invitations/{r.json()['token']}"
            assert "evil" not in url
            # The link's secret admits to this one team, and is no API credential.
            bearer = {"Authorization": f"Bearer {r.json()['token']}"}
            problem(await portal.client().get("/api/teams", headers=bearer), 401)
