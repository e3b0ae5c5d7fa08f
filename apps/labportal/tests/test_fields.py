"""Team-defined fields (both backends): definitions only admins change, each change a new
version that existing records keep; values checked at run time; lists of cases and
materials filtered by any field and by the scanner metadata stored at ingest."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from .fakecluster import METADATA, FakeCluster
from .helpers import Portal, User, problem
from .test_cases import _setup
from .test_materials import proof

pytestmark = pytest.mark.asyncio

CASE_FIELDS = [
    {
        "name": "stain",
        "label": "Stain",
        "type": "enum",
        "choices": ["HE", "IHC", "PAS"],
        "required": True,
    },
    {"name": "organ", "type": "string"},
    {"name": "thickness", "type": "number", "unit": "µm"},
    {"name": "blocks", "type": "int"},
    {"name": "received", "type": "date"},
    {"name": "urgent", "type": "bool"},
]


async def _team(portal: Portal) -> tuple[str, dict[str, User]]:
    return await _setup(portal)  # owner, admin, member, viewer and an outsider


async def _define(user: User, team: str, target: str, fields: list[dict[str, Any]]) -> dict:  # type: ignore[type-arg]
    r = await user.client.put(f"/api/teams/{team}/fields/{target}", json={"fields": fields})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _case(user: User, team: str, **body: Any) -> dict:  # type: ignore[type-arg]
    r = await user.post(f"/api/teams/{team}/cases", json={"title": "Biopsy", **body})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_only_admins_define_fields_and_outsiders_see_no_team(portal: Portal) -> None:
    team, p = await _team(portal)
    url = f"/api/teams/{team}/fields/case"
    empty = (await p["viewer"].get(url)).json()
    assert (empty["version"], empty["fields"]) == (0, [])
    for role in ("member", "viewer"):
        body = problem(await p[role].client.put(url, json={"fields": CASE_FIELDS}), 403)
        assert "admin" in body["detail"]
    problem(await p["outsider"].client.put(url, json={"fields": CASE_FIELDS}), 404)
    problem(await p["outsider"].get(url), 404)
    defined = await _define(p["admin"], team, "case", CASE_FIELDS)
    assert defined["version"] == 1
    assert [f["name"] for f in defined["fields"]] == [f["name"] for f in CASE_FIELDS]
    assert defined["fields"][1]["label"] == "organ"  # a missing label is the name
    assert (await p["viewer"].get(url)).json()["version"] == 1
    # Nothing a member did changed the definition.
    assert (await p["viewer"].get(f"{url}/versions/2")).status_code == 404
    for bad, words in [
        ([{"name": "stain", "type": "enum"}], "needs choices"),
        ([{"name": "organ", "type": "string", "choices": ["x"]}], "only an enum"),
        ([{"name": "a", "type": "int"}, {"name": "a", "type": "bool"}], "unique"),
        ([{"name": "Bad Name", "type": "int"}], "name"),
        ([{"name": "a", "type": "colour"}], "type"),
    ]:
        r = await p["admin"].client.put(url, json={"fields": bad})
        assert words in problem(r, 400)["detail"]
    problem(
        await p["admin"].client.put(f"/api/teams/{team}/fields/slide", json={"fields": []}), 400
    )


async def test_values_are_checked_and_records_keep_their_version(portal: Portal) -> None:
    team, p = await _team(portal)
    member = p["member"]
    # No definition yet: no values either.
    r = await member.post(f"/api/teams/{team}/cases", json={"title": "x", "fields": {"a": 1}})
    assert problem(r, 422)["code"] == "invalid_fields"
    await _define(p["owner"], team, "case", CASE_FIELDS)
    values = {
        "stain": "HE",
        "organ": "liver",
        "thickness": 3,
        "blocks": 2,
        "received": "2024-05-01",
        "urgent": False,
    }
    case = await _case(member, team, fields=values)
    assert case["fields"] == {**values, "thickness": 3.0} and case["fields_version"] == 1
    for bad, where in [
        ({"organ": "liver"}, "stain"),  # required
        ({"stain": "Giemsa"}, "stain"),  # not an allowed value
        ({"stain": "HE", "blocks": "2"}, "blocks"),  # a string is not an int
        ({"stain": "HE", "blocks": 2.5}, "blocks"),
        ({"stain": "HE", "received": "last week"}, "received"),
        ({"stain": "HE", "urgent": "yes"}, "urgent"),
        ({"stain": "HE", "colour": "red"}, "colour"),  # not defined
    ]:
        body = problem(
            await member.post(f"/api/teams/{team}/cases", json={"title": "x", "fields": bad}), 422
        )
        assert body["code"] == "invalid_fields" and where in body["detail"], body
    # Version 2 makes "blocks" required and drops "urgent".
    v2 = [
        f | {"required": True} if f["name"] == "blocks" else f
        for f in CASE_FIELDS
        if f["name"] != "urgent"
    ]
    assert (await _define(p["admin"], team, "case", v2))["version"] == 2
    url = f"/api/cases/{case['id']}"
    # The old case stays valid as it was: read, and edited without touching its fields.
    again = (await member.get(url)).json()
    assert again["fields"]["urgent"] is False and again["fields_version"] == 1
    r = await member.patch(url, json={"title": "Renamed"})
    assert r.status_code == 200 and r.json()["fields_version"] == 1, r.text
    # Changing its fields checks the whole record against the current version.
    body = problem(await member.patch(url, json={"fields": {"organ": "kidney"}}), 422)
    assert "urgent" in body["detail"]
    r = await member.patch(url, json={"fields": {"organ": "kidney", "urgent": None}})
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == {
        "stain": "HE",
        "organ": "kidney",
        "thickness": 3.0,
        "blocks": 2,
        "received": "2024-05-01",
    }
    assert r.json()["fields_version"] == 2
    old = (await p["viewer"].get(f"/api/teams/{team}/fields/case/versions/1")).json()
    assert [f["name"] for f in old["fields"]][-1] == "urgent"
    events = (await member.get(f"{url}/events")).json()
    assert events[-1]["changes"]["fields"]["to"]["organ"] == "kidney"
    problem(await p["viewer"].patch(url, json={"fields": {"organ": "lung"}}), 403)
    problem(await p["outsider"].patch(url, json={"fields": {"organ": "lung"}}), 404)


async def test_case_list_filters_by_any_field(portal: Portal) -> None:
    team, p = await _team(portal)
    await _define(p["admin"], team, "case", CASE_FIELDS)
    made = {}
    for name, fields in {
        "a": {
            "stain": "HE",
            "thickness": 2.5,
            "blocks": 1,
            "received": "2024-01-10",
            "urgent": True,
        },
        "b": {"stain": "HE", "thickness": 4.0, "blocks": 3, "received": "2024-02-20"},
        "c": {
            "stain": "IHC",
            "thickness": 3.0,
            "blocks": 5,
            "received": "2024-03-30",
            "organ": "HE",
        },
    }.items():
        made[name] = (await _case(p["member"], team, title=name, fields=fields))["id"]
    # Another team with the same field names and values: never in this team's results.
    other_team, q = await _team(portal)
    await _define(q["admin"], other_team, "case", CASE_FIELDS)
    await _case(q["member"], other_team, fields={"stain": "HE", "thickness": 3.0})

    async def titles(query: str) -> list[str]:
        r = await p["viewer"].get(f"/api/teams/{team}/cases?{query}&limit=100")
        assert r.status_code == 200, r.text
        return sorted(c["title"] for c in r.json()["items"])

    assert await titles("field.stain=HE") == ["a", "b"]
    assert await titles("field.organ=HE") == ["c"]  # a string field: its own values only
    assert await titles("field.thickness.min=2.6") == ["b", "c"]
    assert await titles("field.thickness.min=2.6&field.thickness.max=3.5") == ["c"]
    assert await titles("field.blocks=3") == ["b"]
    assert await titles("field.received.min=2024-02-01&field.received.max=2024-03-30") == ["b", "c"]
    assert await titles("field.urgent=true") == ["a"]
    assert await titles("field.stain=HE&field.blocks.min=2") == ["b"]
    assert await titles("field.stain=PAS") == []
    for query, words in [
        ("field.colour=red", "no case field"),
        ("field.thickness=thick", "must be a number"),
        ("field.received.min=soon", "must be a date"),
        ("field.stain.min=HE", "no ranges"),
        ("field.stain.avg=1", "bad field filter"),
        ("field.urgent=yes", "must be a bool"),
    ]:
        r = await p["viewer"].get(f"/api/teams/{team}/cases?{query}")
        assert words in problem(r, 400)["detail"], query
    problem(await p["outsider"].get(f"/api/teams/{team}/cases?field.stain=HE"), 404)


def _blob() -> str:
    return hashlib.sha256(os.urandom(16)).hexdigest()


async def _slide(
    user: User,
    case: str,
    fake: FakeCluster,
    metadata: dict[str, Any],
    fields: dict[str, Any] | None = None,
    name: str = "s.svs",
) -> dict:  # type: ignore[type-arg]
    blob = _blob()
    body: dict[str, Any] = {"name": name, "size": 100}
    if fields is not None:
        body["fields"] = fields
    r = await user.post(f"/api/cases/{case}/materials", json=body)
    assert r.status_code == 201, r.text
    fake.store(blob, 100)
    fake.metadata[blob] = {**METADATA, **metadata}
    material = r.json()["material"]["id"]
    r = await user.post(
        f"/api/materials/{material}/complete",
        json={"blob_id": blob, "proof": proof(r.json(), blob)},
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_material_fields_and_scanner_metadata_search(
    cportal: Portal, fake: FakeCluster
) -> None:
    team, p = await _team(cportal)
    member = p["member"]
    await _define(
        p["admin"],
        team,
        "material",
        [
            {"name": "block", "type": "string", "required": True},
            {"name": "level", "type": "int"},
        ],
    )
    case_a = (await _case(member, team, title="A"))["id"]
    case_b = (await _case(member, team, title="B"))["id"]
    r = await member.post(f"/api/cases/{case_a}/materials", json={"name": "x.svs", "size": 100})
    assert problem(r, 422)["code"] == "invalid_fields"  # "block" is required
    ndpi = await _slide(
        member,
        case_a,
        fake,
        {
            "vendor": "hamamatsu",
            "scanner_model": "C13210-01",
            "scanner_id": None,
            "objective_power": 40.0,
            "mpp_x": 0.23,
            "acquired_at": "2024-03-05T14:07:09",
        },
        {"block": "A1", "level": 1},
    )
    svs = await _slide(
        member, case_a, fake, {"acquired_at": "2009-12-29T09:59:15"}, {"block": "A2"}
    )
    bif = await _slide(
        member,
        case_b,
        fake,
        {
            "vendor": "ventana",
            "scanner_model": "VENTANA DP 200",
            "scanner_id": "U7",
            "objective_power": 20.0,
            "mpp_x": 0.465,
            "acquired_at": "2024-03-06",
        },
        {"block": "B1", "level": 3},
    )
    assert ndpi["fields"] == {"block": "A1", "level": 1} and ndpi["fields_version"] == 1
    assert (ndpi["scanner"], ndpi["objective_power"], ndpi["mpp"]) == ("C13210-01", 40.0, 0.23)
    assert bif["scanner"] == "VENTANA DP 200 U7" and bif["scanned_at"] == "2024-03-06"
    assert svs["scanner"] == "ScanScope SS1234" and svs["scanned_at"] == "2009-12-29T09:59:15"
    # PATCH a material's fields and name; viewers may not, outsiders see nothing.
    url = f"/api/materials/{svs['id']}"
    r = await member.patch(url, json={"name": "renamed.svs", "fields": {"level": 2}})
    assert r.status_code == 200 and r.json()["fields"] == {"block": "A2", "level": 2}, r.text
    assert (
        problem(await member.patch(url, json={"fields": {"level": "two"}}), 422)["code"]
        == "invalid_fields"
    )
    problem(await p["viewer"].patch(url, json={"name": "v.svs"}), 403)
    problem(await p["outsider"].patch(url, json={"name": "o.svs"}), 404)

    async def names(query: str) -> list[str]:
        r = await p["viewer"].get(f"/api/teams/{team}/materials?{query}")
        assert r.status_code == 200, r.text
        assert r.json()["total"] == len(r.json()["items"])
        return sorted(m["fields"]["block"] for m in r.json()["items"])

    assert await names("") == ["A1", "A2", "B1"]
    assert await names("scanner=dp 200") == ["B1"]
    assert await names("scanner=ss1234") == ["A2"]
    assert await names("objective=40") == ["A1"]
    assert await names("mpp_min=0.3") == ["A2", "B1"]
    assert await names("mpp_min=0.2&mpp_max=0.47") == ["A1", "B1"]
    assert await names("scanned_from=2024-03-05&scanned_to=2024-03-05") == ["A1"]
    assert await names("scanned_from=2024-01-01") == ["A1", "B1"]
    assert await names("scanned_to=2010-01-01") == ["A2"]
    assert await names("field.level.min=2") == ["A2", "B1"]
    assert await names("field.block=B1&objective=20") == ["B1"]
    # The case's list of slides takes the same filters; the case list keeps cases with a match.
    r = await p["viewer"].get(f"/api/cases/{case_a}/materials?mpp_max=0.3")
    assert [m["id"] for m in r.json()] == [ndpi["id"]]
    r = await p["viewer"].get(f"/api/teams/{team}/cases?scanner=ventana")
    assert [c["title"] for c in r.json()["items"]] == ["B"]
    r = await p["viewer"].get(f"/api/teams/{team}/cases?objective=40&mpp_max=0.3")
    assert [c["title"] for c in r.json()["items"]] == ["A"]
    for bad in ("mpp_min=small", "scanned_from=yesterday", "objective=-1"):
        problem(await p["viewer"].get(f"/api/teams/{team}/materials?{bad}"), 400)
    problem(await p["outsider"].get(f"/api/teams/{team}/materials"), 404)
    # A deleted material leaves the index with it.
    assert (await member.delete(url)).status_code == 204
    assert await names("field.level.min=2") == ["B1"]


async def test_pages_build_forms_from_the_definition(portal: Portal) -> None:
    team, p = await _team(portal)
    await _define(p["admin"], team, "case", CASE_FIELDS)
    page = (await p["member"].get(f"/teams/{team}/cases")).text
    assert '<select name="fields.stain" required>' in page and '<option value="PAS"' in page
    assert 'name="fields.thickness" data-kind="number" step="any"' in page
    assert 'name="fields.blocks" data-kind="int" step="1"' in page
    assert 'type="date" name="fields.received"' in page
    assert 'type="checkbox" name="fields.urgent" data-kind="bool"' in page
    await _define(p["admin"], team, "material", [{"name": "block", "type": "string"}])
    case = await _case(p["member"], team, title="Paged", fields={"stain": "IHC", "blocks": 4})
    page = (await p["member"].get(f"/cases/{case['id']}")).text
    upload_form = page[page.index('id="upload-form"') :]
    assert '<input name="fields.block"' in upload_form  # the slide's fields, sent by upload.js
    assert "<dt>Stain</dt>" in page and "<dd>IHC</dd>" in page
    assert '<option value="IHC" selected>' in page  # the edit form holds the values
    listed = (await p["member"].get(f"/teams/{team}/cases?field.stain=IHC")).text
    assert "Paged" in listed and '<option value="IHC" selected>' in listed
    assert "Paged" not in (await p["member"].get(f"/teams/{team}/cases?field.stain=HE")).text
    # Only admins get the definition forms on the team page.
    assert 'id="case-fields-form"' in (await p["admin"].get(f"/teams/{team}")).text
    assert 'id="case-fields-form"' not in (await p["member"].get(f"/teams/{team}")).text
