"""The team's slide search page and the scanner filters of the cases page (both backends,
faked cluster): a form built from the team's material fields, exactly the matching slides,
the query string as the state, a bad filter shown beside the form (400), another team's
slides never listed and its page a 404."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlparse

import pytest

from .fakecluster import FakeCluster
from .helpers import Portal, User
from .test_fields import _case, _define, _slide, _team

pytestmark = pytest.mark.asyncio

MATERIAL_FIELDS = [
    {"name": "block", "label": "Block", "type": "string"},
    {"name": "stain", "label": "Stain", "type": "enum", "choices": ["HE", "IHC", "PAS"]},
    {"name": "level", "label": "Level", "type": "int"},
    {"name": "cut", "label": "Cut on", "type": "date"},
]
HAMAMATSU = {
    "scanner_model": "C13210-01",
    "scanner_id": None,
    "objective_power": 40.0,
    "mpp_x": 0.23,
    "acquired_at": "2024-03-05T14:07:09",
}
VENTANA = {
    "scanner_model": "VENTANA DP 200",
    "scanner_id": "U7",
    "objective_power": 20.0,
    "mpp_x": 0.465,
    "acquired_at": "2024-03-06",
}
APERIO = {"acquired_at": "2009-12-29T09:59:15"}  # the fake's ScanScope SS1234, 20×, 0.499


async def _slides(portal: Portal, fake: FakeCluster) -> tuple[str, dict[str, User], dict[str, str]]:
    """A team with three slides in two cases: their names -> ids."""
    team, p = await _team(portal)
    await _define(p["admin"], team, "material", MATERIAL_FIELDS)
    member = p["member"]
    case_a = (await _case(member, team, title="Case A"))["id"]
    case_b = (await _case(member, team, title="Case B"))["id"]
    made = [
        (case_a, HAMAMATSU, {"block": "A1", "stain": "HE", "level": 1, "cut": "2024-03-01"}, "a1"),
        (case_a, APERIO, {"block": "A2", "stain": "IHC", "level": 2, "cut": "2024-03-02"}, "a2"),
        (case_b, VENTANA, {"block": "B1", "stain": "HE", "level": 3, "cut": "2024-04-10"}, "b1"),
    ]
    ids = {}
    for case, metadata, fields, name in made:
        ids[name] = (await _slide(member, case, fake, metadata, fields, f"{name}.svs"))["id"]
    return team, p, ids


def _names(page: str) -> list[str]:
    return sorted(re.findall(r'class="slide-name">([^<]+)\.svs<', page))


async def _found(user: User, team: str, query: str) -> list[str]:
    r = await user.get(f"/teams/{team}/materials?{query}")
    assert r.status_code == 200, r.text[:500]
    return _names(r.text)


async def test_the_slides_page_finds_exactly_the_matching_slides(
    cportal: Portal, fake: FakeCluster
) -> None:
    team, p, ids = await _slides(cportal, fake)
    viewer = p["viewer"]
    assert await _found(viewer, team, "") == ["a1", "a2", "b1"]
    assert await _found(viewer, team, "field.block=A2") == ["a2"]  # text field
    assert await _found(viewer, team, "field.stain=HE") == ["a1", "b1"]  # enum field
    assert await _found(viewer, team, "field.level.min=2&field.level.max=3") == ["a2", "b1"]
    assert await _found(viewer, team, "field.cut.max=2024-03-01") == ["a1"]  # date range
    assert await _found(viewer, team, "scanner=dp+200") == ["b1"]
    assert await _found(viewer, team, "scanner=ss1234") == ["a2"]
    assert await _found(viewer, team, "objective=40") == ["a1"]
    assert await _found(viewer, team, "mpp_min=0.2&mpp_max=0.47") == ["a1", "b1"]
    assert await _found(viewer, team, "scanned_from=2024-03-05&scanned_to=2024-03-05") == ["a1"]
    assert await _found(viewer, team, "scanned_to=2010-01-01") == ["a2"]
    # Empty inputs (a submitted form) are no filter; filters combine.
    assert await _found(viewer, team, "field.stain=HE&scanner=&mpp_min=0.3") == ["b1"]

    page = (await viewer.get(f"/teams/{team}/materials?field.stain=HE&objective=20")).text
    # The form, from the definition, holds the search; the objective choices are the team's.
    assert '<option value="HE" selected>' in page
    assert 'name="field.level.min"' in page and 'name="field.cut.max"' in page
    assert 'type="date" name="scanned_from"' in page
    assert re.findall(r'<option value="([\d.]+)"', page) == ["20", "40"]
    assert '<option value="20" selected>' in page
    # A row: thumbnail, case link, scanner facts, field values, status, material and viewer.
    row = page[page.index(f'data-material="{ids["b1"]}"') :].split("</tr>")[0]
    assert f"/api/materials/{ids['b1']}/thumbnail?size=128" in row
    assert "Case B</a>" in row and "VENTANA DP 200 U7" in row and "20×" in row
    assert "0.465" in row and "2024-03-06" in row and "<td>3</td>" in row
    assert 'badge stored">stored' in row
    assert f'href="/materials/{ids["b1"]}"' in row and f'href="/materials/{ids["b1"]}/view"' in row


async def test_paging_keeps_the_filters(cportal: Portal, fake: FakeCluster) -> None:
    team, p = await _team(cportal)
    await _define(p["admin"], team, "material", MATERIAL_FIELDS)
    case = (await _case(p["member"], team, title="Many"))["id"]
    for i in range(26):
        await _slide(p["member"], case, fake, VENTANA, {"stain": "HE"}, f"he{i:02}.svs")
    await _slide(p["member"], case, fake, VENTANA, {"stain": "PAS"}, "pas.svs")
    first = await p["viewer"].get(f"/teams/{team}/materials?field.stain=HE&scanner=ventana")
    assert len(_names(first.text)) == 25 and "26 slides." in first.text
    older = re.search(r'<a href="\?([^"]+)" rel="next">', first.text)
    assert older is not None
    state = parse_qs(html.unescape(older.group(1)))
    assert state == {"field.stain": ["HE"], "scanner": ["ventana"], "offset": ["25"]}
    second = await p["viewer"].get(f"/teams/{team}/materials?{html.unescape(older.group(1))}")
    assert _names(second.text) == ["he00"]  # newest first: the oldest one is last
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("mpp_min=abc", "mpp_min must be a number from 0 to 1000000, not 'abc'"),
        ("objective=-1", "objective must be a number from 0 to 1000"),
        ("scanned_from=yesterday", "scanned_from must be a date (YYYY-MM-DD)"),
        ("mpp_min=0.5&mpp_max=0.2", "mpp_min (0.5) is above mpp_max (0.2)"),
        ("scanned_from=2024-05-01&scanned_to=2024-04-01", "scanned_from (2024-05-01) is above"),
        ("field.nope=1", "the team has no material field 'nope'"),
        ("field.level=two", "field.level must be a int, not 'two'"),
        ("field.level.min=5&field.level.max=1", "field.level.min (5) is above its max (1)"),
        ("field.stain.min=HE", "field stain is a enum: no ranges"),
        ("field.a.b.c=1", "bad field filter 'field.a.b.c'"),
    ],
)
async def test_a_bad_filter_shows_the_form_again_with_the_reason(
    cportal: Portal, fake: FakeCluster, query: str, words: str
) -> None:
    team, p, _ = await _slides(cportal, fake)
    r = await p["member"].get(f"/teams/{team}/materials?{query}&scanner=dp")
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
    assert words in html.unescape(r.text), r.text[-2000:]
    assert (
        'id="slide-search"' in r.text
        and 'name="scanner" placeholder="model or id" value="dp"' in r.text
    )
    assert _names(r.text) == [] and "Nothing searched" in r.text
    # The API answers the same mistakes as a problem.
    api = await p["member"].get(f"/api/teams/{team}/materials?{query}")
    assert api.status_code == 400, api.text


async def test_who_sees_the_slides_page(cportal: Portal, fake: FakeCluster) -> None:
    team, p, _ = await _slides(cportal, fake)
    outsider = p["outsider"]
    other = await cportal.team(outsider, "Other lab")
    theirs = (await _case(outsider, other, title="Theirs"))["id"]
    await _slide(outsider, theirs, fake, VENTANA, None, "theirs.svs")
    for role in ("member", "viewer"):
        assert await _found(p[role], team, "") == ["a1", "a2", "b1"]
    # Another team's page does not exist for you; yours never lists its slides, whatever
    # the query names.
    r = await outsider.get(f"/teams/{team}/materials")
    assert r.status_code == 404 and "a1.svs" not in r.text
    assert (await p["member"].get(f"/teams/{other}/materials")).status_code == 404
    crafted = f"team_id={other}&case_id={theirs}&scanner=ventana"
    assert await _found(p["member"], team, crafted) == ["b1"]
    assert await _found(outsider, other, "") == ["theirs"]
    # Signed out: to the login page, and back here after it.
    r = await cportal.client().get(f"/teams/{team}/materials?field.stain=HE")
    assert r.status_code in (302, 303)
    assert parse_qs(urlparse(r.headers["location"]).query)["next"] == [
        f"/teams/{team}/materials?field.stain=HE"
    ]


async def test_the_cases_page_filters_by_scanner_and_links_the_slides(
    cportal: Portal, fake: FakeCluster
) -> None:
    team, p, _ = await _slides(cportal, fake)
    viewer = p["viewer"]

    async def titles(query: str) -> list[str]:
        r = await viewer.get(f"/teams/{team}/cases?{query}")
        assert r.status_code == 200, r.text[:500]
        return sorted(re.findall(r'<a href="/cases/[^"]+">([^<]+)</a>', r.text))

    assert await titles("") == ["Case A", "Case B"]
    assert await titles("scanner=ventana") == ["Case B"]
    assert await titles("objective=40&mpp_max=0.3") == ["Case A"]
    assert await titles("scanned_to=2010-01-01&scanner=") == ["Case A"]
    page = (await viewer.get(f"/teams/{team}/cases?mpp_min=0.3")).text
    assert 'name="mpp_min" step="any" min="0" value="0.3"' in page
    bad = await viewer.get(f"/teams/{team}/cases?mpp_min=0.5&mpp_max=0.1&tag=x")
    assert bad.status_code == 400 and "mpp_min (0.5) is above mpp_max (0.1)" in bad.text
    assert 'name="tag" placeholder="e.g. biopsy" value="x"' in bad.text
    # "Slides" beside "Cases" wherever the team's cases are linked.
    link = f'href="/teams/{team}/materials"'
    for url in ("/teams", f"/teams/{team}", f"/teams/{team}/cases"):
        assert link in (await viewer.get(url)).text, url
