"""Lifecycle in the portal, against the real portal process, coordinator and node (both
databases): a team's idle period reaches its blobs through the SDK, an archived slide
shows its archived thumbnail and the space saved, a member restores it (progress on the
slide), outsiders cannot, and the pages carry the restore offer."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import slidestore
from slidestore import tokens
from slidestore.cluster import wire
from slidestore.tokens import Operation
from slidestore_server.testing_cluster import Cluster, eventually

from .conftest import create_pg_database, drop_pg_database, pg_url
from .server import ServerProcess
from .test_slide_ownership import Member, own_copy, tus_upload

__all__ = ["own_copy"]  # the fixture, imported for this module's tests

SECRET = tokens.new_secret()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def lifecycle_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Cluster, Path]]:
    """A coordinator with an archive and one node (R = 1), and ``labportal serve`` on it."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    archive = tmp / "archive"
    cluster = Cluster(
        tmp / "cluster",
        nodes=1,
        secret=SECRET,
        coordinator_settings={"replicas": 1, "archive_url": f"file://{archive}"},
    )
    name = None
    with cluster:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp / 'portal.sqlite3'}"
        else:
            name = create_pg_database()
            url = pg_url(name).replace("+asyncpg", "")
        try:
            process = ServerProcess.start(
                url,
                tmp / "server.log",
                LABPORTAL_CLUSTER_URL=cluster.coordinator.url,
                LABPORTAL_CLUSTER_SECRET=SECRET,
            )
            try:
                yield process, cluster, archive
            finally:
                process.stop()
        finally:
            if name:
                drop_pg_database(name)


def operator() -> Any:
    return tokens.mint(SECRET, ops={Operation.ADMIN}, ttl=600, subject="operator")


def test_a_team_archives_restores_and_sees_the_space_saved(
    lifecycle_stack: tuple[ServerProcess, Cluster, Path], own_copy: Path
) -> None:
    server, cluster, _ = lifecycle_stack
    owner = Member(server, "owner")
    case = owner.case()
    team = owner.http.get(f"/api/cases/{case}").json()["team_id"]

    # The team's idle period: set by its admin, refused to an outsider (404).
    outsider = Member(server, "outsider")
    refused = outsider.http.put(
        f"/api/teams/{team}/lifecycle",
        json={"archive_after_days": 1},
        headers={"X-CSRF-Token": outsider.csrf},
    )
    assert refused.status_code == 404
    put = owner.http.put(
        f"/api/teams/{team}/lifecycle",
        json={"archive_after_days": 30},
        headers={"X-CSRF-Token": owner.csrf},
    )
    assert put.status_code == 200, put.text
    assert put.json()["archive_after_days"] == 30

    # A slide uploaded afterwards gets the team's period on its blob.
    created = owner.attach(case, own_copy)
    digest = hashlib.sha256(own_copy.read_bytes()).hexdigest()
    blob_id = asyncio.run(tus_upload(created["upload_url"], created["token"], own_copy, digest))
    assert owner.complete(created, blob_id, own_copy).status_code == 200
    material = created["material"]["id"]
    with slidestore.connect(cluster.coordinator.url, operator(), backoff=0.05) as ops:
        assert ops.info(blob_id).archive_after_days == 30
        # The cluster archives it (an operator asks now, instead of 30 days passing).
        ops.archive(blob_id)
        eventually(lambda: ops.info(blob_id).status is wire.BlobStatus.ARCHIVED, timeout=30)
        archived = ops.info(blob_id)

    # The slide still shows: status, the archived thumbnail, the team's line.
    detail = owner.http.get(f"/api/materials/{material}").json()
    assert detail["status"] == "archived" and detail["slide"] is not None
    thumb = httpx.get(detail["archived_thumbnail"])
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    summary = owner.http.get(f"/api/teams/{team}/archive").json()
    assert summary["archived"] == 1
    assert summary["saved_bytes"] == archived.size * archived.target - archived.archive_bytes
    assert 'id="team-archive"' in owner.http.get(f"/teams/{team}").text
    for page in (f"/materials/{material}", f"/materials/{material}/view"):
        html = owner.http.get(page).text
        assert 'id="lifecycle"' in html and 'id="restore"' in html

    # Outsiders cannot restore (the slide does not exist for them); the owner can.
    assert outsider.post(f"/api/materials/{material}/restore", {}).status_code == 404
    restored = owner.post(f"/api/materials/{material}/restore", {})
    assert restored.status_code == 200, restored.text
    assert restored.json()["status"] in ("restoring", "ready")

    def ready() -> dict[str, Any] | None:
        found: dict[str, Any] = owner.http.get(f"/api/materials/{material}").json()
        return found if found["status"] == "ready" else None

    done = eventually(ready, timeout=60)
    assert done["replicas"] == done["target_replicas"] == 1
    assert done["archived_thumbnail"] is None
    # Bit for bit: the restored copy downloads as the uploaded file.
    view = owner.post(f"/api/materials/{material}/view", {}).json()
    node = view["dzi_urls"][0].split("/slides/")[0]
    download = tokens.mint(SECRET, ops={Operation.DOWNLOAD}, blob=blob_id, ttl=60)
    body = httpx.get(f"{node}/blobs/{blob_id}", params={"token": download}).content
    assert hashlib.sha256(body).hexdigest() == blob_id == digest
    # Restoring what is not archived is a conflict, not an error.
    again = owner.post(f"/api/materials/{material}/restore", {})
    assert again.status_code == 409 and again.json()["code"] == "not_archived"
