"""Annotations (both backends): CRUD, bounding-box queries over thousands, GeoJSON round
trip, validation, who may change what; threads anchored to a slide region."""

from __future__ import annotations

import hashlib
import os

import pytest

from .fakecluster import FakeCluster
from .helpers import Portal, User, problem
from .test_materials import _case, _uploaded

pytestmark = pytest.mark.asyncio


async def _material(cportal: Portal, fake: FakeCluster, owner: User) -> tuple[str, str, str]:
    team, case = await _case(cportal, owner)
    blob = hashlib.sha256(os.urandom(16)).hexdigest()
    return team, case, await _uploaded(owner, case, fake, blob)


async def test_crud_and_validation(cportal: Portal, fake: FakeCluster) -> None:
    owner, member = await cportal.user("owner"), await cportal.user("member")
    team, _, material = await _material(cportal, fake, owner)
    await cportal.join(owner, team, member, "member")
    url = f"/api/materials/{material}/annotations"
    r = await member.post(
        url,
        json={
            "kind": "rectangle",
            "points": [[50, 60], [10, 20]],
            "label": "tumour",
            "color": "#00FF00",
        },
    )
    assert r.status_code == 201, r.text
    rect = r.json()
    assert rect["points"] == [[10, 20], [50, 60]] and rect["bbox"] == [10, 20, 50, 60]
    assert rect["color"] == "#00ff00"
    for bad in (
        {"kind": "polygon", "points": [[0, 0], [1, 1]]},
        {"kind": "point", "points": [[0, 0], [1, 1]]},
        {"kind": "line", "points": [[0, 0], [1, 1]], "color": "red"},
        {"kind": "circle", "points": [[0, 0]]},
    ):
        problem(await member.post(url, json=bad), 400)
    r = await member.patch(f"/api/annotations/{rect['id']}", json={"points": [[0, 0], [5, 5]]})
    assert r.json()["bbox"] == [0, 0, 5, 5]
    problem(await member.patch(f"/api/annotations/{rect['id']}", json={"points": [[1, 1]]}), 422)
    # Another member may not change it; an admin (the owner) may.
    other = await cportal.user("other")
    await cportal.join(owner, team, other, "member")
    problem(await other.delete(f"/api/annotations/{rect['id']}"), 403)
    outsider = await cportal.user("outsider")
    problem(await outsider.delete(f"/api/annotations/{rect['id']}"), 404)
    problem(await outsider.patch(f"/api/annotations/{rect['id']}", json={"label": "x"}), 404)
    assert (await owner.delete(f"/api/annotations/{rect['id']}")).status_code == 204
    assert (await owner.get(url)).json()["items"] == []


async def test_bbox_query_over_thousands_and_geojson(cportal: Portal, fake: FakeCluster) -> None:
    owner = await cportal.user("owner")
    _, _, material = await _material(cportal, fake, owner)
    url = f"/api/materials/{material}/annotations"
    # A 50 x 50 grid of 10-px squares every 100 px, imported as GeoJSON.
    features = []
    for i in range(50):
        for j in range(50):
            x, y = i * 100, j * 100
            ring = [[x, y], [x + 10, y], [x + 10, y + 10], [x, y + 10], [x, y]]
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {"kind": "rectangle", "label": f"{i},{j}"},
                }
            )
    features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [7, 7]}})
    features.append(
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [9, 9]]}}
    )
    r = await owner.post(url + "/geojson", json={"type": "FeatureCollection", "features": features})
    assert r.status_code == 201 and r.json() == {"imported": 2502}, r.text[:300]

    page = (await owner.get(url, params={"bbox": "150,150,349.5,260"})).json()
    labels = sorted(a["label"] for a in page["items"])
    assert labels == ["2,2", "3,2"], labels  # x in 200..300, y 200 (260 < 300)
    page = (await owner.get(url, params={"bbox": "0,0,8,8"})).json()
    assert sorted(a["kind"] for a in page["items"]) == ["line", "point", "rectangle"]
    page = (await owner.get(url, params={"limit": 10})).json()
    assert len(page["items"]) == 10 and page["truncated"] is True
    problem(await owner.get(url, params={"bbox": "1,2,3"}), 400)
    problem(await owner.get(url, params={"bbox": "5,5,1,1"}), 400)

    exported = (await owner.get(url + "/geojson")).json()
    assert exported["type"] == "FeatureCollection" and len(exported["features"]) == 2502
    square = next(f for f in exported["features"] if f["properties"]["label"] == "2,2")
    assert square["geometry"]["coordinates"][0][0] == [200, 200]
    assert square["properties"]["kind"] == "rectangle"
    bad = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1]]]}}
        ],
    }
    problem(await owner.post(url + "/geojson", json=bad), 422)


async def test_threads_anchored_to_a_region(cportal: Portal, fake: FakeCluster) -> None:
    owner = await cportal.user("owner")
    _, case, material = await _material(cportal, fake, owner)
    _, _, foreign = await _material(cportal, fake, owner)
    region = {"x": 100, "y": 200, "width": 300, "height": 400}
    r = await owner.post(
        f"/api/cases/{case}/comments",
        json={"body": "look here", "material_id": material, "region": region},
    )
    assert r.status_code == 201, r.text
    assert r.json()["material_id"] == material and r.json()["region"] == region
    r = await owner.post(
        f"/api/cases/{case}/comments", json={"body": "x", "material_id": foreign, "region": region}
    )
    assert problem(r, 422)["code"] == "invalid_anchor"
    problem(
        await owner.post(f"/api/cases/{case}/comments", json={"body": "x", "region": region}), 422
    )
    page = await owner.get(f"/cases/{case}")
    assert f"/materials/{material}/view?x=100" in page.text
