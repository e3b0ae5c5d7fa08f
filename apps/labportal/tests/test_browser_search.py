"""The Slides page in Debian's chromium, against the real portal process, coordinator and
node: from the team page to Slides, a team-defined field chosen in the generated form,
only the matching slide listed (its real thumbnail), followed to its material page, and
the back button returns to the search as it was."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import slidestore
from slidestore import tokens
from slidestore.tokens import Operation

from .conftest import REAL_CLUSTER_SECRET
from .server import ServerProcess
from .test_browser import console_errors, signed_in_page
from .test_slide_ownership import Member

STAINS = {"choices": ["HE", "IHC"], "name": "stain", "label": "Stain", "type": "enum"}


def _attach(member: Member, case: str, path: Path, blob_id: str, stain: str) -> str:
    """A material of the stored slide with ``stain`` (the cluster has the content: the
    portal links it once the member proves holding the file)."""
    body: dict[str, Any] = {
        "name": f"{stain.lower()}.svs",
        "size": path.stat().st_size,
        "sha256": blob_id,
        "fields": {"stain": stain},
    }
    created = member.post(f"/api/cases/{case}/materials", body)
    assert created.status_code == 201 and created.json()["exists"], created.text
    done = member.complete(created.json(), blob_id, path)
    assert done.status_code == 200, done.text
    assert done.json()["scanner"], done.json()  # the facts the search reads were kept
    return str(created.json()["material"]["id"])


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the page, not the database
@pytest.mark.timeout(600)  # the session cluster and portal may start here, on a busy machine
def test_a_field_filter_in_the_browser_finds_the_slide(
    server: ServerProcess, real_cluster: str, sample_slide_path: Path
) -> None:
    from playwright.sync_api import expect

    sdk = tokens.mint(REAL_CLUSTER_SECRET, ops={Operation.WRITE, Operation.READ}, ttl=600)
    with slidestore.connect(real_cluster, sdk) as cluster:
        blob_id = cluster.upload(sample_slide_path, progress=False, wait="all")
    member = Member(server, "Searcher")
    team = member.post("/api/teams", {"name": "Search lab"}).json()["id"]
    r = member.http.put(
        f"/api/teams/{team}/fields/material",
        json={"fields": [STAINS]},
        headers={"X-CSRF-Token": member.csrf},
    )
    assert r.status_code == 200, r.text
    case = member.post(f"/api/teams/{team}/cases", {"title": "Stains"}).json()["id"]
    _attach(member, case, sample_slide_path, blob_id, "HE")
    ihc = _attach(member, case, sample_slide_path, blob_id, "IHC")

    with signed_in_page(server.url, member.http.cookies) as page:
        errors = console_errors(page)
        page.goto(f"{server.url}/teams/{team}")
        page.get_by_role("button", name="Slides →").click()  # a link styled as a button
        page.wait_for_url(f"**/teams/{team}/materials")
        names = page.locator("#slide-results .slide-name")
        expect(names).to_have_count(2)
        page.select_option('#slide-search select[name="field.stain"]', "IHC")
        page.click("#slide-search button[type=submit]")
        page.wait_for_url(re.compile(r".*[?&]field\.stain=IHC(&|$)"))
        expect(names).to_have_count(1)
        expect(names).to_have_text("ihc.svs")
        page.wait_for_function(
            "() => document.querySelector('#slide-results img')?.naturalWidth > 0"
        )  # the real thumbnail, through the redirect with the viewer's token
        names.click()
        page.wait_for_url(f"**/materials/{ihc}")
        expect(page.locator("h1")).to_contain_text("ihc.svs")
        page.go_back()
        page.wait_for_url(re.compile(r".*field\.stain=IHC"))
        expect(page.locator('#slide-search select[name="field.stain"]')).to_have_value("IHC")
        expect(names).to_have_text("ihc.svs")
        assert errors == []
