"""Getting data out (both backends, a faked cluster): the original file goes only to roles
that may see labels, as a redirect to a replica with a one-minute ``download`` token for that
blob; a region export is open to every viewer and bounded in size before anything renders.
The rendered export itself runs against a real node in the browser test."""

from __future__ import annotations

import hashlib
import os
import time
from urllib.parse import parse_qs, urlparse

import pytest

from labportal.domain.materials.export import MAX_EXPORT_SIDE
from slidestore import tokens
from slidestore.tokens import Operation

from .fakecluster import NODES, SECRET, FakeCluster
from .helpers import Portal, problem
from .test_materials import _shared_slide

pytestmark = pytest.mark.asyncio


@pytest.fixture
def blob() -> str:
    return hashlib.sha256(os.urandom(16)).hexdigest()


async def test_download_is_a_narrow_redirect_for_roles_that_see_labels(
    cportal: Portal, fake: FakeCluster, blob: str
) -> None:
    owner, viewer, team, _, material = await _shared_slide(cportal, fake, blob, "viewer")
    r = await owner.get(f"/api/materials/{material}/download", follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["cache-control"] == "no-store"
    location = urlparse(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}" in NODES
    assert location.path == f"/blobs/{blob}"
    cap = tokens.verify(SECRET, parse_qs(location.query)["token"][0])
    assert cap.ops == {Operation.DOWNLOAD} and cap.blob == blob
    assert cap.exp <= time.time() + 61
    # The next-wider uses are refused: another blob, label pictures, writing.
    other = hashlib.sha256(b"another slide").hexdigest()
    assert not cap.allows(Operation.DOWNLOAD, other)
    for wider in (Operation.LABELS, Operation.WRITE, Operation.DELETE):
        assert not cap.allows(wider, blob)

    # A viewer may not have the file while the team keeps labels to admins...
    r = await viewer.get(f"/api/materials/{material}/download", follow_redirects=False)
    assert problem(r, 403)["code"] == "download_not_allowed"
    assert "location" not in r.headers
    # ...and may once the team lets viewers see labels.
    r = await owner.patch(f"/api/teams/{team}", json={"label_min_role": "viewer"})
    assert r.status_code == 200, r.text
    r = await viewer.get(f"/api/materials/{material}/download", follow_redirects=False)
    assert r.status_code == 303
    # Someone outside the team does not learn the material exists.
    stranger = await cportal.user("stranger")
    r = await stranger.get(f"/api/materials/{material}/download", follow_redirects=False)
    problem(r, 404)
    r = await stranger.get(f"/api/materials/{material}/export?x=0&y=0&width=10&height=10")
    problem(r, 404)


async def test_export_is_bounded_and_checked_before_rendering(
    cportal: Portal, fake: FakeCluster, blob: str
) -> None:
    _, viewer, _, _, material = await _shared_slide(cportal, fake, blob, "viewer")
    url = f"/api/materials/{material}/export"
    side = MAX_EXPORT_SIDE + 1
    r = await viewer.get(url, params={"x": 0, "y": 0, "width": side, "height": 16})
    body = problem(r, 400)
    assert body["code"] == "region_too_large" and body["max_side"] == MAX_EXPORT_SIDE
    # The same region one level coarser fits the bound: only the node is missing then.
    for params, code in (
        ({"width": 16, "height": 16, "format": "gif"}, "invalid_region"),
        ({"width": 0, "height": 16}, "invalid_region"),
        ({"width": 16, "height": 16, "level": 99}, "invalid_region"),
        ({"x": 5000, "width": 16, "height": 16}, "invalid_region"),  # beyond 2220 px
        ({"width": 16}, "invalid_region"),  # no height
    ):
        r = await viewer.get(url, params={"x": 0, "y": 0, **params})
        assert problem(r, 400)["code"] == code, params
    r = await viewer.get(url, params={"x": 0, "y": 0, "width": "many", "height": 16})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/")
