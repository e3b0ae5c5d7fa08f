"""Who owns a slide, against the real portal process, coordinator and node: the portal
links content only for a client that proves it holds the file, and deletes from the
cluster only what it uploaded itself."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

import slidestore
from labportal.domain.materials.possession import Challenge, answer_from_file
from slidestore import tokens
from slidestore.client.tus import TusUpload
from slidestore.cluster import wire
from slidestore.tokens import Operation

from .conftest import REAL_CLUSTER_SECRET
from .helpers import PASSWORD
from .server import ServerProcess


def operator_view(cluster_url: str, blob_id: str) -> wire.BlobView:
    admin = tokens.mint(REAL_CLUSTER_SECRET, ops={Operation.ADMIN}, ttl=60)
    answer = httpx.get(
        f"{cluster_url}/v1/blobs/{blob_id}", headers={"Authorization": f"Bearer {admin}"}
    )
    assert answer.status_code == 200, answer.text
    return msgspec.json.decode(answer.content, type=wire.BlobView)


class Member:
    """A browser session: registered, logged in, with its CSRF token."""

    def __init__(self, server: ServerProcess, name: str) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=60)
        email = f"{name}-{time.monotonic_ns()}@example.org"
        body = {"email": email, "password": PASSWORD, "display_name": name}
        assert self.http.post("/api/auth/register", json=body).status_code < 300
        login = self.http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        self.csrf = login.json()["csrf_token"]

    def post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(url, json=body, headers={"X-CSRF-Token": self.csrf})

    def delete(self, url: str) -> httpx.Response:
        return self.http.delete(url, headers={"X-CSRF-Token": self.csrf})

    def case(self) -> str:
        team = self.post("/api/teams", {"name": "Lab"}).json()["id"]
        case = self.post(f"/api/teams/{team}/cases", {"title": "Case"})
        assert case.status_code == 201, case.text
        return str(case.json()["id"])

    def attach(self, case: str, path: Path) -> dict[str, Any]:
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        body = {"name": path.name, "size": path.stat().st_size, "sha256": sha256}
        created = self.post(f"/api/cases/{case}/materials", body)
        assert created.status_code == 201, created.text
        answer: dict[str, Any] = created.json()
        return answer

    def complete(self, created: dict[str, Any], blob_id: str, path: Path) -> httpx.Response:
        challenge = msgspec.convert(created["challenge"], Challenge)
        proof = answer_from_file(challenge, path)
        material = created["material"]["id"]
        return self.post(
            f"/api/materials/{material}/complete", {"blob_id": blob_id, "proof": proof}
        )


async def tus_upload(url: str, token: str, path: Path, sha256: str) -> str:
    async with httpx.AsyncClient(timeout=60) as client:
        upload = TusUpload(client, url, token, path, size=path.stat().st_size, sha256=sha256)
        return await upload.run()


@pytest.fixture
def own_copy(generated_svs: Path, tmp_path: Path) -> Path:
    # Unique content per test: each database's run uploads (and deletes) its own blob.
    copy = Path(shutil.copy(generated_svs, tmp_path / "mine.svs"))
    with copy.open("ab") as file:
        file.write(os.urandom(64))  # past the last IFD: still the same slide
    return copy


def test_the_portal_never_deletes_a_blob_it_did_not_upload(
    server: ServerProcess, real_cluster: str, sample_slide_path: Path
) -> None:
    """An SDK user stored the slide (pinned). A portal member who holds the file links it
    (proof of possession) and deletes the material: the cluster keeps the slide."""
    sdk_token = tokens.mint(
        REAL_CLUSTER_SECRET, ops={Operation.WRITE, Operation.READ}, ttl=600, subject="lab-sdk"
    )
    with slidestore.connect(real_cluster, sdk_token) as cluster:
        blob_id = cluster.upload(sample_slide_path, progress=False, wait="all")

    member = Member(server, "member")
    created = member.attach(member.case(), sample_slide_path)
    assert created["exists"] is True and created["token"] is None
    linked = member.complete(created, blob_id, sample_slide_path)
    assert linked.status_code == 200 and linked.json()["blob_id"] == blob_id, linked.text
    gone = member.delete(f"/api/materials/{created['material']['id']}")
    assert gone.status_code == 204
    assert operator_view(real_cluster, blob_id).status == wire.BlobStatus.OK


def test_an_upload_through_the_portal_is_its_own_to_delete(
    server: ServerProcess, real_cluster: str, own_copy: Path
) -> None:
    member = Member(server, "uploader")
    created = member.attach(member.case(), own_copy)
    assert created["exists"] is False
    grant = tokens.verify(REAL_CLUSTER_SECRET, created["token"])
    assert grant.is_upload_grant and grant.size == own_copy.stat().st_size
    digest = hashlib.sha256(own_copy.read_bytes()).hexdigest()
    blob_id = asyncio.run(tus_upload(created["upload_url"], created["token"], own_copy, digest))
    assert blob_id == digest
    done = member.complete(created, blob_id, own_copy)
    assert done.status_code == 200, done.text
    # The grant that made the upload reads nothing, not even what it uploaded.
    node = created["upload_url"].removesuffix("/uploads")
    read = httpx.get(f"{node}/blobs/{blob_id}", params={"token": created["token"]})
    assert read.status_code == 403
    assert member.delete(f"/api/materials/{created['material']['id']}").status_code == 204
    assert operator_view(real_cluster, blob_id).status == wire.BlobStatus.DELETED
