"""The client against a real coordinator process and a real node process.

The test registers the node with the coordinator and reports its inventory itself
(``Register``/``Heartbeat`` as ``docs/cluster.md`` describes), so it does not depend on
the node's cluster agent; everything the client does goes over real HTTP to the real
servers: placement, tus upload, ``exists``, ``wait``, nodes, open/read, delete.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import numpy as np
import pytest
from client_harness import SECRET, client_token

import slidestore
from slidestore import errors, tokens
from slidestore.cluster import wire
from slidestore.cluster.model import NodeState
from slidestore.tokens import Operation
from slidestore_server.testing import CoordinatorProcess, NodeProcess
from slidestore_server.testing_cluster import eventually

REPORT = wire.NodeReport(capacity_bytes=10**12, free_bytes=10**12, used_bytes=0)


def as_node(url: str, path: str, message: msgspec.Struct) -> httpx.Response:
    token = tokens.mint(SECRET, ops={Operation.NODE}, ttl=600)
    response = httpx.post(
        url + path,
        content=msgspec.json.encode(message),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def cluster_processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CoordinatorProcess, NodeProcess]]:
    coordinator = CoordinatorProcess(
        tmp_path_factory.mktemp("coordinator") / "data",
        settings={"secret": SECRET, "replicas": 1, "suspect_after": 60, "dead_after": 120},
    )
    node = NodeProcess(tmp_path_factory.mktemp("node") / "data", settings={"secret": SECRET})
    with coordinator, node:
        as_node(
            coordinator.url,
            f"{wire.API}/nodes/register",
            wire.Register(node_id="n1", url=node.url, report=REPORT),
        )
        yield coordinator, node


@pytest.fixture(scope="module")
def slide_copy(generated_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copy(generated_svs, tmp_path_factory.mktemp("slide") / "generated.svs"))


def test_upload_wait_open_delete_through_the_real_coordinator(
    cluster_processes: tuple[CoordinatorProcess, NodeProcess], slide_copy: Path
) -> None:
    coordinator, node = cluster_processes
    expected_id = hashlib.sha256(slide_copy.read_bytes()).hexdigest()
    with slidestore.connect(coordinator.url, client_token(Operation.ADMIN)) as operator:
        (view,) = operator.nodes()
        assert view.node_id == "n1" and view.url == node.url and view.state == NodeState.ALIVE
    with slidestore.connect(coordinator.url, client_token()) as cluster:
        with pytest.raises(errors.Forbidden):
            cluster.nodes()

        blob_id = cluster.upload(slide_copy, progress=False)
        assert blob_id == expected_id
        # Until the node reports it, the coordinator counts no copy.
        with pytest.raises(errors.ReplicationTimeout):
            cluster.wait(blob_id, 1, timeout=0.5)
        size = slide_copy.stat().st_size
        as_node(
            coordinator.url,
            f"{wire.API}/nodes/n1/heartbeat",
            wire.Heartbeat(report=REPORT, added=(wire.BlobRef(blob_id=blob_id, size=size),)),
        )
        waited = cluster.wait(blob_id, 1, timeout=10)
        assert [r.node_id for r in waited.replicas] == ["n1"]
        assert cluster.info(blob_id).size == size
        assert [r.url for r in cluster.replicas(blob_id)] == [node.url]

        # Known content: the placement answers "exists", nothing is sent again.
        assert cluster.upload(slide_copy, progress=False, wait="all", replicas=1) == blob_id

        remote = cluster.open(blob_id)
        with slidestore.open_slide(slide_copy) as local:
            assert remote.metadata == local.metadata
            assert np.array_equal(
                remote.read_region((1024, 512), 1, (200, 100)),
                local.read_region((1024, 512), 1, (200, 100)),
            )

        cluster.delete(blob_id)

        def gone() -> bool:
            answer = httpx.head(
                f"{node.url}/blobs/{blob_id}",
                headers={"Authorization": f"Bearer {client_token()}"},
            )
            return answer.status_code == 404

        # DELETE answers once recorded; the node's copy goes right after.
        eventually(gone, timeout=20)


def test_real_coordinator_errors_are_named(
    cluster_processes: tuple[CoordinatorProcess, NodeProcess], slide_copy: Path
) -> None:
    coordinator, _ = cluster_processes
    with slidestore.connect(coordinator.url, client_token()) as cluster:
        with pytest.raises(errors.BlobNotFound, match="has no blob"):
            cluster.info("e" * 64)
        with pytest.raises(errors.InvalidBlobId):
            cluster.info("not-hex")
    with slidestore.connect(coordinator.url, client_token(Operation.READ)) as cluster:
        with pytest.raises(errors.Forbidden):
            cluster.upload(slide_copy, progress=False)
    with slidestore.connect(coordinator.url, "forged.token") as cluster:
        with pytest.raises(errors.InvalidToken):
            cluster.nodes()
