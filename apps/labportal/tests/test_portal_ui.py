"""The portal's pages as people read them (both backends, faked cluster): thumbnails through a
redirect with the viewer's narrow token, words instead of internal names, history as
sentences, storage on the team page, the viewer's neighbours in the case."""

from __future__ import annotations

import hashlib
import os
import re
from urllib.parse import parse_qs, urlparse

import pytest

from slidestore import tokens
from slidestore.tokens import Operation

from .fakecluster import NODES, SECRET, FakeCluster
from .helpers import Portal, User, problem
from .test_materials import OTHER, _case, _uploaded

pytestmark = pytest.mark.asyncio


def _blob() -> str:
    return hashlib.sha256(os.urandom(16)).hexdigest()


async def test_a_thumbnail_is_a_redirect_with_the_narrowest_token(
    cportal: Portal, fake: FakeCluster
) -> None:
    owner, outsider = await cportal.user("owner"), await cportal.user("outsider")
    _, case = await _case(cportal, owner)
    blob = _blob()
    material = await _uploaded(owner, case, fake, blob)
    r = await owner.get(f"/api/materials/{material}/thumbnail?size=320")
    assert r.status_code == 303, r.text
    assert r.headers["cache-control"] == "no-store"
    target = urlparse(r.headers["location"])
    assert f"{target.scheme}://{target.netloc}" == NODES[0]
    assert target.path == f"/slides/{blob}/thumbnail"
    query = parse_qs(target.query)
    assert query["size"] == ["320"]
    grant = tokens.verify(SECRET, query["token"][0])
    # Read this blob: not another blob, not its label, not the file.
    assert grant.ops == {Operation.READ} and grant.blob == blob
    assert not grant.allows(Operation.READ, OTHER)
    for wider in (Operation.LABELS, Operation.DOWNLOAD, Operation.WRITE):
        assert not grant.allows(wider, blob)
    # Another team hears nothing about it; a size out of bounds is named; no session: 401.
    problem(await outsider.get(f"/api/materials/{material}/thumbnail"), 404)
    assert (
        "size"
        in problem(await owner.get(f"/api/materials/{material}/thumbnail?size=5000"), 422)["detail"]
    )
    problem(await cportal.client().get(f"/api/materials/{material}/thumbnail"), 401)


async def test_no_thumbnail_before_the_slide_is_stored(cportal: Portal, fake: FakeCluster) -> None:
    owner = await cportal.user("owner")
    _, case = await _case(cportal, owner)
    r = await owner.post(f"/api/cases/{case}/materials", json={"name": "b.svs", "size": 100})
    material = r.json()["material"]["id"]
    assert (
        problem(await owner.get(f"/api/materials/{material}/thumbnail"), 409)["code"] == "not_ready"
    )
    page = (await owner.get(f"/cases/{case}")).text
    assert f"/api/materials/{material}/thumbnail" not in page and "uploading…" in page


async def test_the_view_names_the_objective(cportal: Portal, fake: FakeCluster) -> None:
    owner = await cportal.user("owner")
    _, case = await _case(cportal, owner)
    material = await _uploaded(owner, case, fake, _blob())
    view = (await owner.post(f"/api/materials/{material}/view")).json()
    assert view["magnification"] == 20.0 and view["mpp"] == 0.499


async def _case_page(owner: User, case: str) -> str:
    r = await owner.get(f"/cases/{case}")
    assert r.status_code == 200, r.text[:300]
    return r.text


async def test_the_case_page_speaks_words(cportal: Portal, fake: FakeCluster) -> None:
    owner = await cportal.user("owner")
    team, case = await _case(cportal, owner)
    material = await _uploaded(owner, case, fake, _blob())
    await owner.get(f"/materials/{material}")  # nothing remembered yet: the view does that
    await owner.post(f"/api/materials/{material}/view")
    page = await _case_page(owner, case)
    assert ">Send for review</button>" in page and "Move to" not in page
    assert (
        f'<img class="thumb" loading="lazy" width="320" height="240"\n         src="/api/materials/{material}/thumbnail?size=320" alt="Thumbnail of the slide a.svs">'
        in page
    )
    assert "100 bytes" in page and "ScanScope SS1234" in page and "20× · 0.499 µm/px" in page
    assert "Owner opened the case “Case”" in page and "Owner attached the slide “a.svs”" in page
    assert '<span class="badge open" id="case-status">open</span>' in page
    assert re.search(
        r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">just now</time>', page
    )
    r = await owner.post(f"/api/cases/{case}/status", json={"status": "in_review"})
    assert r.status_code == 200, r.text
    page = await _case_page(owner, case)
    assert "Owner changed status from open to in review" in page
    assert ">Send back</button>" in page and ">Sign out</button>" in page
    assert "{&#34;status&#34;" not in page and '{"status": {"from"' not in page  # no raw JSON

    listing = (await owner.get(f"/teams/{team}/cases")).text
    assert f'src="/api/materials/{material}/thumbnail?size=128" alt="Slide a.svs"' in listing
    assert '<span class="badge in_review">in review</span>' in listing
    filtered = (await owner.get(f"/teams/{team}/cases?tag=nothing-has-this")).text
    assert "No case matches these filters" in filtered


async def test_the_team_page_shows_storage(cportal: Portal, fake: FakeCluster) -> None:
    owner = await cportal.user("owner")
    team, case = await _case(cportal, owner)
    await _uploaded(owner, case, fake, _blob())
    page = (await owner.get(f"/teams/{team}")).text
    quota = cportal.settings.team_quota_bytes
    assert f'<progress id="storage-meter" value="100" max="{quota}"' in page
    assert "100 bytes of 1.1 TB used" in page


async def test_the_viewer_knows_the_slides_around_it(cportal: Portal, fake: FakeCluster) -> None:
    owner = await cportal.user("owner")
    _, case = await _case(cportal, owner)
    first = await _uploaded(owner, case, fake, _blob())
    second = await _uploaded(owner, case, fake, _blob())
    one = (await owner.get(f"/materials/{first}/view")).text
    two = (await owner.get(f"/materials/{second}/view")).text
    assert f'data-next="{second}"' in one and "data-previous" not in one
    assert f'data-previous="{first}"' in two and "data-next=" not in two
    assert f'<option value="{second}">' in one  # compare with the other slide
    assert 'data-theme="dark"' in one


async def test_form_errors_name_the_field(cportal: Portal) -> None:
    """What portal.js puts under a field: the validation problem names it."""
    owner = await cportal.user("owner")
    team = await cportal.team(owner)
    r = await owner.post(f"/api/teams/{team}/cases", json={"title": ""})
    body = problem(r, 400)
    assert any(e["key"] == "title" for e in body["errors"]), body
