"""Annotation classes and measurements (both backends): a team's class list (admins set it),
the class an annotation must carry once there is a list, the ``?class=`` filter, ellipses,
and lengths and areas in µm from the slide's mpp."""

from __future__ import annotations

import math

import pytest

from .fakecluster import FakeCluster
from .helpers import Portal, problem
from .test_annotations import _material

pytestmark = pytest.mark.asyncio
MPP = 0.499  # the fake cluster's slide (fakecluster.METADATA)
CLASSES = [{"name": "tumour", "color": "#FF0000"}, {"name": "stroma", "color": "#00aa00"}]


async def test_class_list_is_the_admins_and_annotations_must_use_it(
    cportal: Portal, fake: FakeCluster
) -> None:
    owner, member, viewer = [await cportal.user(r) for r in ("owner", "member", "viewer")]
    outsider = await cportal.user("outsider")
    team, _, material = await _material(cportal, fake, owner)
    await cportal.join(owner, team, member, "member")
    await cportal.join(owner, team, viewer, "viewer")
    url = f"/api/teams/{team}/annotation-classes"
    annotations = f"/api/materials/{material}/annotations"
    # Without a list, annotations carry no class (and need none).
    plain = await member.post(annotations, json={"kind": "point", "points": [[1, 1]]})
    assert plain.status_code == 201 and plain.json()["class"] is None
    r = await member.post(annotations, json={"kind": "point", "points": [[1, 1]], "class": "x"})
    assert problem(r, 422)["code"] == "invalid_class"
    for who in (member, viewer):
        problem(await who.client.put(url, json={"classes": CLASSES}), 403)
    problem(await outsider.client.put(url, json={"classes": CLASSES}), 404)
    problem(await outsider.get(url), 404)
    r = await owner.client.put(url, json={"classes": CLASSES})
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"name": "tumour", "color": "#ff0000"},
        {"name": "stroma", "color": "#00aa00"},
    ]
    assert (await viewer.get(url)).json() == r.json()
    dup = {"classes": [{"name": "a", "color": "#000000"}, {"name": "a", "color": "#111111"}]}
    assert "unique" in problem(await owner.client.put(url, json=dup), 400)["detail"]
    # Now every annotation names one of them; the colour defaults to the class's.
    body = problem(await member.post(annotations, json={"kind": "point", "points": [[2, 2]]}), 422)
    assert body["code"] == "invalid_class" and body["allowed"] == ["stroma", "tumour"]
    r = await member.post(
        annotations, json={"kind": "point", "points": [[2, 2]], "class": "necrosis"}
    )
    assert problem(r, 422)["code"] == "invalid_class"
    tumour = await member.post(
        annotations, json={"kind": "rectangle", "points": [[0, 0], [10, 10]], "class": "tumour"}
    )
    assert tumour.status_code == 201 and tumour.json()["color"] == "#ff0000", tumour.text
    stroma = await member.post(
        annotations,
        json={"kind": "point", "points": [[5, 5]], "class": "stroma", "color": "#123456"},
    )
    assert stroma.json()["color"] == "#123456" and stroma.json()["class"] == "stroma"
    # The viewer's layers: ?class= keeps the named classes only.
    only = (await viewer.get(f"{annotations}?class=tumour")).json()["items"]
    assert [a["id"] for a in only] == [tumour.json()["id"]]
    both = (await viewer.get(f"{annotations}?class=tumour,stroma")).json()["items"]
    assert len(both) == 2
    assert len((await viewer.get(annotations)).json()["items"]) == 3
    # Reclassifying checks the list too.
    a = f"/api/annotations/{tumour.json()['id']}"
    assert problem(await member.patch(a, json={"class": "bone"}), 422)["code"] == "invalid_class"
    r = await member.patch(a, json={"class": "stroma"})
    assert r.status_code == 200 and r.json()["class"] == "stroma"
    # GeoJSON carries the class (QuPath's classification too) and brings it back.
    exported = (await viewer.get(f"{annotations}/geojson")).json()
    props = [f["properties"] for f in exported["features"]]
    assert {"class": "stroma", "classification": {"name": "stroma"}}.items() <= props[1].items()
    _, _, elsewhere = await _material(cportal, fake, owner)  # a team without classes
    features = {"type": "FeatureCollection", "features": exported["features"][1:]}
    r = await owner.post(f"/api/materials/{elsewhere}/annotations/geojson", json=features)
    assert problem(r, 422)["code"] == "invalid_class"
    r = await owner.post(f"{annotations}/geojson", json=features)
    assert r.status_code == 201 and r.json()["imported"] == 2, r.text


async def test_measurements_in_micrometres_and_ellipses(cportal: Portal, fake: FakeCluster) -> None:
    owner = await cportal.user("owner")
    _, _, material = await _material(cportal, fake, owner)
    # Reading the material stores the slide's metadata (its mpp) in the portal.
    assert (await owner.get(f"/api/materials/{material}")).json()["slide"]["mpp_x"] == MPP
    url = f"/api/materials/{material}/annotations"

    async def draw(kind: str, points: list[list[float]]) -> dict:  # type: ignore[type-arg]
        r = await owner.post(url, json={"kind": kind, "points": points})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    rect = await draw("rectangle", [[100, 100], [300, 200]])
    assert rect["area_um2"] == pytest.approx(200 * 100 * MPP**2)
    assert rect["length_um"] == pytest.approx(2 * (200 + 100) * MPP)
    line = await draw("line", [[0, 0], [30, 40], [30, 140]])
    assert line["length_um"] == pytest.approx((50 + 100) * MPP) and line["area_um2"] is None
    triangle = await draw("polygon", [[0, 0], [100, 0], [0, 100]])
    assert triangle["area_um2"] == pytest.approx(5000 * MPP**2)
    assert triangle["length_um"] == pytest.approx((200 + math.sqrt(2) * 100) * MPP)
    ellipse = await draw("ellipse", [[400, 300], [0, 100]])
    assert ellipse["points"] == [[0, 100], [400, 300]]
    assert ellipse["area_um2"] == pytest.approx(math.pi * 200 * 100 * MPP**2)
    circle = await draw("ellipse", [[0, 0], [100, 100]])
    assert circle["length_um"] == pytest.approx(math.pi * 100 * MPP, rel=1e-9)
    point = await draw("point", [[5, 5]])
    assert point["length_um"] is None and point["area_um2"] is None
    problem(await owner.post(url, json={"kind": "ellipse", "points": [[0, 0]]}), 400)
    # Moving re-measures.
    r = await owner.patch(f"/api/annotations/{rect['id']}", json={"points": [[0, 0], [10, 10]]})
    assert r.json()["area_um2"] == pytest.approx(100 * MPP**2)
    # An ellipse leaves as a polygon marked "ellipse" and comes back as one.
    feature = next(
        f
        for f in (await owner.get(f"{url}/geojson")).json()["features"]
        if f["id"] == ellipse["id"]
    )
    assert (
        feature["properties"]["kind"] == "ellipse"
        and len(feature["geometry"]["coordinates"][0]) == 65
    )
    r = await owner.post(
        f"{url}/geojson", json={"type": "FeatureCollection", "features": [feature]}
    )
    assert r.status_code == 201, r.text
    back = [a for a in (await owner.get(url)).json()["items"] if a["kind"] == "ellipse"]
    corners = [c for p in back[-1]["points"] for c in p]
    assert corners == pytest.approx([0, 100, 400, 300])


async def test_no_measurements_without_an_mpp(cportal: Portal, fake: FakeCluster) -> None:
    owner = await cportal.user("owner")
    team = await cportal.team(owner)
    case = (await owner.post(f"/api/teams/{team}/cases", json={"title": "c"})).json()["id"]
    r = await owner.post(f"/api/cases/{case}/materials", json={"name": "a.svs", "size": 100})
    material = r.json()["material"]["id"]  # still uploading: the portal knows no mpp
    r = await owner.post(
        f"/api/materials/{material}/annotations",
        json={"kind": "rectangle", "points": [[0, 0], [10, 10]]},
    )
    assert r.status_code == 201 and r.json()["area_um2"] is None and r.json()["length_um"] is None
