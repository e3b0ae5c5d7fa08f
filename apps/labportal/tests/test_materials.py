"""Materials against a faked cluster (both backends): placement, completion, status on read,
dedup, deletion, narrow tokens, labels by team setting, and who may do what."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec
import pytest

from labportal.cluster import Cluster
from labportal.domain.materials.possession import Challenge, digest
from labportal.settings import Settings
from slidestore import tokens
from slidestore.tokens import Operation

from .conftest import portal_settings
from .fakecluster import COORDINATOR, NODES, SECRET, FakeCluster, content
from .helpers import Portal, User, problem

pytestmark = pytest.mark.asyncio
OTHER = hashlib.sha256(b"slide two").hexdigest()


@pytest.fixture
def blob() -> str:
    """A fresh blob id per test: the databases are shared."""
    return hashlib.sha256(os.urandom(16)).hexdigest()


async def _case(portal: Portal, owner: User) -> tuple[str, str]:
    team = await portal.team(owner)
    r = await owner.post(f"/api/teams/{team}/cases", json={"title": "Case"})
    assert r.status_code == 201, r.text
    return team, r.json()["id"]


def proof(created: dict[str, Any], blob: str, size: int = 100) -> str:
    """What a client holding the blob's file answers to the material's challenge."""
    challenge = msgspec.convert(created["challenge"], Challenge)
    data = content(blob, size)
    return digest(challenge, [data[o : o + n] for o, n in challenge.ranges])


async def _uploaded(owner: User, case: str, fake: FakeCluster, blob: str) -> str:
    r = await owner.post(f"/api/cases/{case}/materials", json={"name": "a.svs", "size": 100})
    assert r.status_code == 201, r.text
    material = r.json()["material"]["id"]
    fake.store(blob, 100)
    done = {"blob_id": blob, "proof": proof(r.json(), blob)}
    r = await owner.post(f"/api/materials/{material}/complete", json=done)
    assert r.status_code == 200, r.text
    return material


async def _linked(owner: User, case: str, blob: str) -> str:
    """Attach content the cluster already holds: no upload, only the proof."""
    body = {"name": "again.svs", "size": 100, "sha256": blob}
    r = await owner.post(f"/api/cases/{case}/materials", json=body)
    assert r.status_code == 201 and r.json()["exists"] is True, r.text
    material = r.json()["material"]["id"]
    done = {"blob_id": blob, "proof": proof(r.json(), blob)}
    r = await owner.post(f"/api/materials/{material}/complete", json=done)
    assert r.status_code == 200, r.text
    return str(material)


async def _shared_slide(
    cportal: Portal, fake: FakeCluster, blob: str, role: str
) -> tuple[User, User, str, str, str]:
    """An owner's team, case and uploaded slide, and another user with ``role`` in it."""
    owner, other = await cportal.user("owner"), await cportal.user(role)
    team, case = await _case(cportal, owner)
    await cportal.join(owner, team, other, role)
    return owner, other, team, case, await _uploaded(owner, case, fake, blob)


async def test_upload_flow_status_and_narrow_tokens(
    cportal: Portal, fake: FakeCluster, blob: str
) -> None:
    owner = await cportal.user("owner")
    _, case = await _case(cportal, owner)
    r = await owner.post(f"/api/cases/{case}/materials", json={"name": "scan.svs", "size": 100})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["exists"] is False and body["upload_url"] == NODES[0] + "/uploads"
    assert body["material"]["status"] == "uploading"
    grant = tokens.verify(SECRET, body["token"])
    # One upload of these 100 bytes: it reads nothing and places nothing.
    assert grant.ops == {Operation.UPLOAD} and grant.size == 100 and grant.is_upload_grant
    for wider in (Operation.READ, Operation.DOWNLOAD, Operation.WRITE):
        assert not grant.allows(wider, blob)
    material = body["material"]["id"]

    # Completing before the bytes are in the cluster is refused (the challenge stays open).
    done = {"blob_id": blob, "proof": proof(body, blob)}
    r = await owner.post(f"/api/materials/{material}/complete", json=done)
    assert problem(r, 422)["code"] == "not_uploaded"
    fake.store(blob, 100, copies=1)
    r = await owner.post(f"/api/materials/{material}/complete", json=done)
    assert r.status_code == 200 and r.json()["status"] == "replicating", r.text
    fake.copies[blob] = 2
    r = await owner.get(f"/api/materials/{material}")
    detail = r.json()
    assert detail["status"] == "ready" and detail["replicas"] == 2, detail
    assert detail["slide"]["scanner"] == "ScanScope SS1234"
    assert detail["slide"]["mpp_x"] == 0.499 and detail["slide"]["magnification"] == 20.0
    assert [n["url"] for n in detail["replica_nodes"]] == list(NODES)
    listed = (await owner.get(f"/api/cases/{case}/materials")).json()
    assert [m["status"] for m in listed] == ["ready"]

    r = await owner.post(f"/api/materials/{material}/view")
    view = r.json()
    assert view["dzi_urls"] == [f"{n}/slides/{blob}.dzi" for n in NODES]
    cap = tokens.verify(SECRET, view["token"])
    assert cap.ops == {Operation.READ} and cap.blob == blob
    assert not cap.allows(Operation.READ, OTHER)
    assert view["mpp"] == 0.499
    label = parse_qs(urlparse(view["labels"]["label"]).query)["token"][0]
    assert Operation.LABELS in tokens.verify(SECRET, label).ops  # the owner may see labels


async def test_labels_follow_the_team_setting(
    cportal: Portal, fake: FakeCluster, blob: str
) -> None:
    owner, viewer, team, _, material = await _shared_slide(cportal, fake, blob, "viewer")
    view = (await viewer.post(f"/api/materials/{material}/view")).json()
    assert view["labels"] == {} and view["token"]
    assert (await viewer.get(f"/api/materials/{material}")).json()["labels_allowed"] is False
    r = await owner.patch(f"/api/teams/{team}", json={"label_min_role": "viewer"})
    assert r.status_code == 200 and r.json()["label_min_role"] == "viewer", r.text
    view = (await viewer.post(f"/api/materials/{material}/view")).json()
    assert set(view["labels"]) == {"label", "macro"}


async def test_same_content_stored_once_and_deleted_with_last_use(
    cportal: Portal, fake: FakeCluster, blob: str
) -> None:
    owner = await cportal.user("owner")
    _, case = await _case(cportal, owner)
    _, case2 = await _case(cportal, owner)
    first = await _uploaded(owner, case, fake, blob)
    r = await owner.post(
        f"/api/cases/{case2}/materials", json={"name": "again.svs", "size": 100, "sha256": blob}
    )
    body = r.json()
    assert body["exists"] is True and body["upload_url"] is None and body["token"] is None
    assert body["material"]["status"] == "uploading"  # linked only once the proof is in
    assert fake.placements[-1].sha256 == blob
    second = body["material"]["id"]
    done = {"blob_id": blob, "proof": proof(body, blob)}
    r = await owner.post(f"/api/materials/{second}/complete", json=done)
    assert r.status_code == 200 and r.json()["status"] == "ready", r.text
    assert (await owner.delete(f"/api/materials/{first}")).status_code == 204
    assert fake.deleted == []  # still used by the second material
    assert (await owner.delete(f"/api/materials/{second}")).status_code == 204
    assert fake.deleted == [blob]
    problem(await owner.get(f"/api/materials/{second}"), 404)
    events = (await owner.get(f"/api/cases/{case}/events")).json()
    assert [e["action"] for e in events][-2:] == ["material_added", "material_deleted"]


async def test_deleting_a_case_deletes_its_unused_blobs(
    cportal: Portal, fake: FakeCluster, blob: str
) -> None:
    owner = await cportal.user("owner")
    _, case = await _case(cportal, owner)
    _, keeper = await _case(cportal, owner)
    shared = hashlib.sha256(os.urandom(16)).hexdigest()
    await _uploaded(owner, case, fake, blob)  # only in this case (twice)
    await _linked(owner, case, blob)
    await _uploaded(owner, case, fake, shared)  # also attached to the other case
    await _linked(owner, keeper, shared)
    fake.down = True  # the cluster must answer: nothing is deleted without it
    problem(await owner.delete(f"/api/cases/{case}"), 503)
    fake.down = False
    assert len((await owner.get(f"/api/cases/{case}/materials")).json()) == 3
    assert (await owner.delete(f"/api/cases/{case}")).status_code == 204
    assert fake.deleted == [blob]  # once, and not the blob the other case still uses
    problem(await owner.get(f"/api/cases/{case}"), 404)
    assert (await owner.get(f"/api/cases/{keeper}/materials")).json()[0]["status"] == "ready"


async def test_deleting_a_team_deletes_its_unused_blobs(
    cportal: Portal, fake: FakeCluster, blob: str
) -> None:
    owner, admin = await cportal.user("owner"), await cportal.user("admin")
    team, case = await _case(cportal, owner)
    await cportal.join(owner, team, admin, "admin")
    r = await owner.post(f"/api/teams/{team}/cases", json={"title": "Second"})
    second = r.json()["id"]
    _, keeper = await _case(cportal, owner)  # another team's case
    shared = hashlib.sha256(os.urandom(16)).hexdigest()
    await _uploaded(owner, case, fake, blob)  # only in this team (in two of its cases)
    await _linked(owner, second, blob)
    await _uploaded(owner, second, fake, shared)  # also attached in the other team
    await _linked(owner, keeper, shared)
    problem(await admin.delete(f"/api/teams/{team}"), 403)  # the owner only
    fake.down = True  # the cluster must answer: nothing is deleted without it
    problem(await owner.delete(f"/api/teams/{team}"), 503)
    fake.down = False
    assert (await owner.get(f"/api/teams/{team}")).status_code == 200
    assert len((await owner.get(f"/api/cases/{second}/materials")).json()) == 2
    assert fake.deleted == []
    assert (await owner.delete(f"/api/teams/{team}")).status_code == 204
    assert fake.deleted == [blob]  # once, and not the blob the other team still uses
    problem(await owner.get(f"/api/teams/{team}"), 404)
    problem(await owner.get(f"/api/cases/{case}"), 404)
    assert (await owner.get(f"/api/cases/{keeper}/materials")).json()[0]["status"] == "ready"


async def test_failures_are_kept_and_checked(cportal: Portal, fake: FakeCluster, blob: str) -> None:
    owner = await cportal.user("owner")
    _, case = await _case(cportal, owner)
    r = await owner.post(
        f"/api/cases/{case}/materials", json={"name": "x.txt", "size": 100, "sha256": OTHER}
    )
    material = r.json()["material"]["id"]
    fake.store(blob, 100)
    done = {"blob_id": blob, "proof": "0" * 64}
    r = await owner.post(f"/api/materials/{material}/complete", json=done)
    assert problem(r, 422)["code"] == "sha256_mismatch"
    reason = "the file does not open as a slide: Unsupported or missing image file"
    r = await owner.post(f"/api/materials/{material}/failed", json={"reason": reason})
    assert r.json()["status"] == "failed" and r.json()["error"] == reason
    problem(await owner.post(f"/api/materials/{material}/view"), 409)
    r = await owner.post(f"/api/cases/{case}/materials", json={"name": "b.svs", "size": 0})
    problem(r, 400)
    fake.down = True
    r = await owner.post(f"/api/cases/{case}/materials", json={"name": "b.svs", "size": 5})
    assert problem(r, 503)["code"] == "cluster_unavailable"


async def test_without_a_cluster_materials_answer_503(portal: Portal) -> None:
    owner = await portal.user("owner")
    _, case = await _case(portal, owner)
    r = await owner.post(f"/api/cases/{case}/materials", json={"name": "a.svs", "size": 5})
    assert problem(r, 503)["code"] == "cluster_unavailable"


async def test_outsiders_and_viewers_are_refused(
    cportal: Portal, fake: FakeCluster, blob: str
) -> None:
    owner, viewer, outsider = [await cportal.user(n) for n in ("owner", "viewer", "outsider")]
    team, case = await _case(cportal, owner)
    await cportal.join(owner, team, viewer, "viewer")
    material = await _uploaded(owner, case, fake, blob)
    for method, url in [
        ("GET", f"/api/materials/{material}"),
        ("POST", f"/api/materials/{material}/view"),
        ("DELETE", f"/api/materials/{material}"),
        ("GET", f"/api/cases/{case}/materials"),
        ("GET", f"/api/materials/{material}/annotations"),
        ("GET", f"/api/materials/{material}/annotations/geojson"),
    ]:
        problem(await outsider.client.request(method, url), 404)
    r = await outsider.post(f"/api/cases/{case}/materials", json={"name": "a", "size": 1})
    problem(r, 404)
    r = await viewer.post(f"/api/cases/{case}/materials", json={"name": "a", "size": 1})
    problem(r, 403)
    problem(await viewer.delete(f"/api/materials/{material}"), 403)
    r = await viewer.post(
        f"/api/materials/{material}/complete", json={"blob_id": blob, "proof": "0" * 64}
    )
    problem(r, 403)
    rect = {"kind": "rectangle", "points": [[0, 0], [5, 5]]}
    problem(await viewer.post(f"/api/materials/{material}/annotations", json=rect), 403)
    assert (await viewer.get(f"/api/materials/{material}")).status_code == 200
    assert fake.deleted == []


async def test_vendor_libraries_are_served_from_node_modules(portal: Portal) -> None:
    client = portal.client()
    for url in ("/vendor/openseadragon/openseadragon.min.js", "/vendor/tus/tus.min.js"):
        r = await client.get(url)
        assert r.status_code == 200 and len(r.content) > 10_000, url
    assert (await client.get("/vendor/openseadragon/images/home_rest.png")).status_code == 200


async def test_material_and_viewer_pages(cportal: Portal, fake: FakeCluster, blob: str) -> None:
    owner, outsider = await cportal.user("owner"), await cportal.user("outsider")
    _, case = await _case(cportal, owner)
    material = await _uploaded(owner, case, fake, blob)
    for url in (f"/materials/{material}", f"/materials/{material}/view"):
        page = await owner.get(url)
        assert page.status_code == 200 and "a.svs" in page.text, page.text[:300]
        problem(await outsider.get(url), 404)
    assert f'href="/materials/{material}/view"' in (await owner.get(f"/cases/{case}")).text


@pytest.mark.parametrize(
    ("status", "copies", "expected"),
    [
        ("ok", 2, "ready"),
        ("under_replicated", 1, "replicating"),
        ("archived", 0, "archived"),
        ("unavailable", 0, "unavailable"),
        ("deleted", 0, "unavailable"),
        ("lost", 0, "lost"),
    ],
)
def test_material_status_follows_the_cluster(status: str, copies: int, expected: str) -> None:
    from types import SimpleNamespace

    from labportal.domain.materials.services import status_of
    from slidestore.cluster.wire import BlobView, ReplicaView

    view = BlobView(
        blob_id="ab" * 32,
        size=1,
        target=2,
        replicas=tuple(
            ReplicaView(node_id=f"n{i}", url=NODES[i], state="alive")  # type: ignore[arg-type]
            for i in range(copies)
        ),
        status=status,  # type: ignore[arg-type]
        pinned=True,
        expires_at=None,
    )
    material = SimpleNamespace(blob_id="ab" * 32, error=None)
    assert status_of(material, view) == expected  # type: ignore[arg-type]
    assert status_of(SimpleNamespace(blob_id=None, error=None), None) == "uploading"  # type: ignore[arg-type]


async def test_a_sha256_alone_links_nothing(cportal: Portal, fake: FakeCluster, blob: str) -> None:
    """A member of another team (or a removed one) who knows a slide's sha256 but not its
    bytes gets no material of it: one wrong answer spends the challenge."""
    victim, attacker = await cportal.user("victim"), await cportal.user("attacker")
    _, victim_case = await _case(cportal, victim)
    await _uploaded(victim, victim_case, fake, blob)
    _, case = await _case(cportal, attacker)

    body = {"name": "stolen.svs", "size": 100, "sha256": blob}
    r = await attacker.post(f"/api/cases/{case}/materials", json=body)
    assert r.status_code == 201 and r.json()["exists"] is True and r.json()["token"] is None
    created = r.json()
    material = created["material"]["id"]
    problem(await attacker.post(f"/api/materials/{material}/view"), 409)
    guess = {"blob_id": blob, "proof": hashlib.sha256(blob.encode()).hexdigest()}
    r = await attacker.post(f"/api/materials/{material}/complete", json=guess)
    assert problem(r, 422)["code"] == "proof_failed"
    # The challenge is spent: no second guess, even with the right answer.
    right = {"blob_id": blob, "proof": proof(created, blob)}
    r = await attacker.post(f"/api/materials/{material}/complete", json=right)
    assert problem(r, 409)["code"] == "no_challenge"
    detail = (await attacker.get(f"/api/materials/{material}")).json()
    assert detail["blob_id"] is None and detail["status"] == "failed", detail

    # Without declaring the sha256: complete names the victim's blob id. Same answer.
    r = await attacker.post(f"/api/cases/{case}/materials", json={"name": "x.svs", "size": 100})
    material = r.json()["material"]["id"]
    r = await attacker.post(f"/api/materials/{material}/complete", json=guess)
    assert problem(r, 422)["code"] == "proof_failed"


async def test_one_answer_per_challenge_even_at_once(
    cportal: Portal, fake: FakeCluster, blob: str
) -> None:
    owner = await cportal.user("owner")
    _, case = await _case(cportal, owner)
    fake.store(blob, 100)
    r = await owner.post(
        f"/api/cases/{case}/materials", json={"name": "a.svs", "size": 100, "sha256": blob}
    )
    material = r.json()["material"]["id"]
    guesses = [{"blob_id": blob, "proof": f"{i:064x}"} for i in range(6)]
    answers = await asyncio.gather(
        *(owner.post(f"/api/materials/{material}/complete", json=g) for g in guesses)
    )
    codes = sorted(a.json()["code"] for a in answers)
    assert codes.count("proof_failed") == 1, codes
    assert set(codes) == {"proof_failed", "no_challenge"}, codes


async def test_view_token_renewal_ends_with_membership(
    cportal: Portal, fake: FakeCluster, blob: str
) -> None:
    owner, member, team, case, material = await _shared_slide(cportal, fake, blob, "member")
    first = (await member.post(f"/api/materials/{material}/view")).json()
    assert first["expires_in"] == cportal.settings.view_token_ttl_seconds
    renewed = (await member.post(f"/api/materials/{material}/view")).json()
    cap = tokens.verify(SECRET, renewed["token"])  # renewal is the same call, as narrow
    assert cap.blob == blob and cap.ops == {Operation.READ}
    assert not cap.allows(Operation.READ, OTHER)
    assert (await owner.delete(f"/api/teams/{team}/members/{member.id}")).status_code == 204
    problem(await member.post(f"/api/materials/{material}/view"), 404)
    problem(await member.get(f"/api/materials/{material}"), 404)
    problem(await member.get(f"/api/cases/{case}/materials"), 404)


def test_view_tokens_live_five_minutes_by_default() -> None:
    assert Settings().view_token_ttl_seconds == 300


async def test_a_team_quota_bounds_what_its_members_can_promise(
    database_url: str, fake: FakeCluster
) -> None:
    """One member cannot have the cluster promise unbounded space: the team's slides,
    uploads in progress included, stay within LABPORTAL_TEAM_QUOTA_BYTES."""
    settings = portal_settings(
        database_url, cluster_url=COORDINATOR, cluster_secret=SECRET, team_quota_bytes=250
    )
    async with Portal.running(settings) as portal:
        await portal.app.state.cluster.aclose()
        portal.app.state.cluster = Cluster(settings, transport=fake.transport())
        owner, other = await portal.user("owner"), await portal.user("other")
        _, case = await _case(portal, owner)
        url = f"/api/cases/{case}/materials"
        first = await owner.post(url, json={"name": "a.svs", "size": 100})
        assert first.status_code == 201  # uploading: its 100 bytes count already
        assert (await owner.post(url, json={"name": "b.svs", "size": 100})).status_code == 201
        refused = await owner.post(url, json={"name": "c.svs", "size": 100})
        assert problem(refused, 507)["code"] == "quota_exceeded"
        assert len(fake.placements) == 2  # nothing was asked of the cluster for it
        # A failed upload frees its share; another team has its own quota.
        material = first.json()["material"]["id"]
        reason = {"reason": "gave up"}
        assert (
            await owner.post(f"/api/materials/{material}/failed", json=reason)
        ).status_code == 200
        assert (await owner.post(url, json={"name": "c.svs", "size": 100})).status_code == 201
        _, elsewhere = await _case(portal, other)
        r = await other.post(f"/api/cases/{elsewhere}/materials", json={"name": "d", "size": 250})
        assert r.status_code == 201
