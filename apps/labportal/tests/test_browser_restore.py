"""Restoring an archived slide from the page, in Debian's chromium: the material page shows
the archived thumbnail and "Restore"; a click brings the copies back with a progress bar,
and the viewer then shows the slide's tiles."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest

import slidestore
from slidestore import tokens
from slidestore.cluster import wire
from slidestore.tokens import Operation
from slidestore_server.testing_cluster import Cluster, eventually

from .server import ServerProcess
from .test_browser import signed_in_page
from .test_slide_ownership import Member, own_copy, tus_upload

__all__ = ["own_copy"]  # the fixture, imported for this module's test

SECRET = tokens.new_secret()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Cluster]]:
    """A coordinator with a file archive and one node (R = 1), and the portal on it."""
    tmp = tmp_path_factory.mktemp("restore")
    cluster = Cluster(
        tmp / "cluster",
        nodes=1,
        secret=SECRET,
        coordinator_settings={"replicas": 1, "archive_url": f"file://{tmp / 'archive'}"},
    )
    with cluster:
        process = ServerProcess.start(
            f"sqlite:///{tmp / 'portal.sqlite3'}",
            tmp / "server.log",
            LABPORTAL_CLUSTER_URL=cluster.coordinator.url,
            LABPORTAL_CLUSTER_SECRET=SECRET,
        )
        try:
            yield process, cluster
        finally:
            process.stop()


@pytest.mark.timeout(600)
def test_an_archived_slide_is_restored_from_its_page(
    stack: tuple[ServerProcess, Cluster], own_copy: Path
) -> None:
    from PIL import Image
    from playwright.sync_api import expect

    server, cluster = stack
    owner = Member(server, "owner")
    case = owner.case()
    created = owner.attach(case, own_copy)
    digest = hashlib.sha256(own_copy.read_bytes()).hexdigest()
    blob_id = asyncio.run(tus_upload(created["upload_url"], created["token"], own_copy, digest))
    assert owner.complete(created, blob_id, own_copy).status_code == 200
    material = created["material"]["id"]
    operator = tokens.mint(SECRET, ops={Operation.ADMIN}, ttl=600, subject="operator")
    with slidestore.connect(cluster.coordinator.url, operator, backoff=0.05) as ops:
        ops.archive(blob_id)  # as the idle period would, now
        eventually(lambda: ops.info(blob_id).status is wire.BlobStatus.ARCHIVED, timeout=60)

    with signed_in_page(server.url, owner.http.cookies) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}/materials/{material}")
        expect(page.locator("#lifecycle")).to_be_visible()
        thumbnail = page.locator("#archived-thumbnail")
        expect(thumbnail).to_be_visible()
        page.wait_for_function(
            "() => document.getElementById('archived-thumbnail').naturalWidth > 0"
        )
        restore = page.locator("#restore")
        expect(restore).to_be_visible()
        restore.click()
        expect(page.locator("#lifecycle-note")).to_have_text("Restored.", timeout=120_000)

        # The viewer opens the restored slide: real tiles, not a blank stage.
        page.goto(f"{server.url}/materials/{material}/view")
        page.wait_for_function(
            "() => window.OpenSeadragon && document.querySelector('#osd canvas')"
            " && [...document.querySelectorAll('#scalebar-text')].some(e => e.textContent)",
            timeout=60_000,
        )
        page.wait_for_timeout(2000)  # tiles fade in
        shot = Image.open(BytesIO(page.locator("#osd").screenshot())).convert("L")
        assert statistics.pvariance(list(shot.getdata())) > 100, "the viewer shows no tiles"
        assert errors == []
    detail = owner.http.get(f"/api/materials/{material}").json()
    assert detail["status"] == "ready" and detail["replicas"] == 1
