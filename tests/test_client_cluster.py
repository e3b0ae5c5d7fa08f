"""``Cluster`` calls to the coordinator, against the stub coordinator of ``client_harness``
over real HTTP, with real node processes taking the uploads: placement, ``exists``,
re-placement without a dead primary, ``wait="all"``, nodes, delete, and error mapping."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from client_harness import SECRET, StubCoordinator, client_token, replica

import slidestore
from slidestore import errors
from slidestore.cluster import wire
from slidestore.cluster.model import NodeState
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess, free_port


@pytest.fixture(scope="module")
def slide_copy(generated_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copy(generated_svs, tmp_path_factory.mktemp("slide") / "generated.svs"))


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("node") / "data", settings={"secret": SECRET})
    with process:
        yield process


@pytest.fixture
def stub() -> Iterator[StubCoordinator]:
    coordinator = StubCoordinator().start()
    yield coordinator
    coordinator.stop()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def node_has(node: NodeProcess, blob_id: str) -> bool:
    response = httpx.head(
        f"{node.url}/blobs/{blob_id}", headers={"Authorization": f"Bearer {client_token()}"}
    )
    return response.status_code == 200


def test_upload_places_and_uploads_to_the_primary(
    stub: StubCoordinator,
    node: NodeProcess,
    slide_copy: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stub.targets = [wire.Target(node_id="n1", url=node.url)]
    offsets: list[int] = []
    with slidestore.connect(stub.url, client_token()) as cluster:
        blob_id = cluster.upload(slide_copy, replicas=3, expires_at=1e10, on_offset=offsets.append)
    bars = capsys.readouterr().err
    assert "hashing generated.svs" in bars and "uploading generated.svs" in bars
    assert blob_id == sha256_of(slide_copy)
    assert node_has(node, blob_id)
    (request,) = stub.placements
    assert request.size == slide_copy.stat().st_size
    assert request.sha256 == blob_id
    assert request.replicas == 3 and request.expires_at == 1e10 and request.exclude == ()
    assert offsets[-1] == slide_copy.stat().st_size
    assert stub.waits == []  # wait="primary": no long poll


def test_upload_of_content_the_cluster_has_sends_nothing(
    stub: StubCoordinator, slide_copy: Path
) -> None:
    stub.existing.add(sha256_of(slide_copy))
    # No target at all: any tus request would fail.
    with slidestore.connect(stub.url, client_token()) as cluster:
        assert cluster.upload(slide_copy, progress=False) == sha256_of(slide_copy)
    assert len(stub.placements) == 1


def test_dead_primary_is_excluded_and_the_upload_goes_elsewhere(
    stub: StubCoordinator, node: NodeProcess, slide_copy: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    stub.targets = [wire.Target(node_id="dead", url=dead), wire.Target(node_id="n1", url=node.url)]
    with slidestore.connect(stub.url, client_token(), backoff=0.01) as cluster:
        blob_id = cluster.upload(slide_copy, progress=False, retries=2)
    assert node_has(node, blob_id)
    assert [p.exclude for p in stub.placements] == [(), ("dead",)]


def test_primary_killed_mid_upload_is_excluded(
    stub: StubCoordinator,
    node: NodeProcess,
    tmp_path_factory: pytest.TempPathFactory,
    slide_copy: Path,
) -> None:
    """The primary dies after taking part of the file and stays dead: the client asks for
    a new placement without it and uploads the whole file to the new primary."""
    doomed = NodeProcess(tmp_path_factory.mktemp("doomed") / "data", settings={"secret": SECRET})
    with doomed:
        stub.targets = [
            wire.Target(node_id="doomed", url=doomed.url),
            wire.Target(node_id="n1", url=node.url),
        ]

        def on_offset(offset: int) -> None:
            if offset > 0 and doomed.proc is not None:
                doomed.kill(signal.SIGKILL)

        with slidestore.connect(stub.url, client_token(), backoff=0.01) as cluster:
            blob_id = cluster.upload(
                slide_copy, progress=False, retries=3, chunk_size=256 * 1024, on_offset=on_offset
            )
    assert node_has(node, blob_id)
    assert [p.exclude for p in stub.placements] == [(), ("doomed",)]


def test_no_placement_is_insufficient_storage(stub: StubCoordinator, slide_copy: Path) -> None:
    with slidestore.connect(stub.url, client_token()) as cluster:
        with pytest.raises(errors.InsufficientStorage, match="no node has room"):
            cluster.upload(slide_copy, progress=False)


def test_wait_all_polls_until_the_coordinator_reports_the_replicas(
    stub: StubCoordinator, node: NodeProcess, slide_copy: Path
) -> None:
    stub.targets = [wire.Target(node_id="n1", url=node.url)]
    blob_id = sha256_of(slide_copy)
    stub.blobs[blob_id] = [replica("n1", node.url), replica("n2", "http://elsewhere")]
    stub.wait_timeouts = 2
    with slidestore.connect(stub.url, client_token()) as cluster:
        assert cluster.upload(slide_copy, progress=False, wait="all", replicas=2) == blob_id
    assert len(stub.waits) == 3
    assert all(w["replicas"] == "2" for w in stub.waits)


def test_wait_gives_up_with_replication_timeout(stub: StubCoordinator) -> None:
    stub.wait_timeouts = 1000
    with slidestore.connect(stub.url, client_token()) as cluster:
        with pytest.raises(errors.ReplicationTimeout) as caught:
            cluster.wait("a" * 64, 3, timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    assert stub.waits and stub.waits[0]["replicas"] == "3"


def test_blob_replicas_nodes_and_delete(stub: StubCoordinator) -> None:
    blob_id = "b" * 64
    stub.blobs[blob_id] = [
        replica("n1", "http://n1"),
        replica("n2", "http://n2", NodeState.SUSPECT),
    ]
    stub.nodes = [
        wire.NodeView(
            node_id="n1",
            url="http://n1",
            zone="z",
            state=NodeState.ALIVE,
            capacity_bytes=100,
            free_bytes=50,
            used_bytes=50,
            reserve_bytes=0,
            load=0.0,
            last_heartbeat=1.0,
            blobs=1,
        )
    ]
    with slidestore.connect(stub.url, client_token()) as cluster:
        view = cluster.info(blob_id)
        assert view == cluster.blob(blob_id)
        assert view.status == wire.BlobStatus.OK
        assert [r.node_id for r in cluster.replicas(blob_id)] == ["n1", "n2"]
        with pytest.raises(errors.Forbidden):
            cluster.nodes()  # addresses and free space are an operator's view
        cluster.delete(blob_id)
        assert stub.deleted == [blob_id]
        with pytest.raises(errors.BlobNotFound, match=f"no blob {blob_id}"):
            cluster.info(blob_id)
        with pytest.raises(errors.BlobNotFound):
            cluster.delete(blob_id)


def test_token_errors_are_named(stub: StubCoordinator) -> None:
    stub.blobs["c" * 64] = [replica("n1", "http://n1")]
    with slidestore.connect(stub.url, "not-a-token") as cluster:
        with pytest.raises(errors.InvalidToken):
            cluster.info("c" * 64)
    with slidestore.connect(stub.url, client_token(Operation.READ)) as cluster:
        with pytest.raises(errors.Forbidden, match="delete"):
            cluster.delete("c" * 64)
    with slidestore.connect(stub.url, client_token(Operation.ADMIN)) as operator:
        assert operator.nodes() == stub.nodes
    with slidestore.connect(stub.url) as cluster:
        with pytest.raises(errors.TokenMissing):
            cluster.nodes()


def test_coordinator_failover_and_transient_errors(stub: StubCoordinator) -> None:
    """A dead coordinator URL first, and 503s from the live one: retried until it answers."""
    stub.blobs["d" * 64] = [replica("n1", "http://n1")]
    dead = f"http://127.0.0.1:{free_port()}"
    stub.fail_next = 2
    with slidestore.connect([dead, stub.url], client_token(), retries=3, backoff=0.01) as cluster:
        assert cluster.info("d" * 64).blob_id == "d" * 64
        assert stub.fail_next == 0
    stub.fail_next = 100
    with slidestore.connect(
        stub.url, client_token(Operation.ADMIN), retries=1, backoff=0.01
    ) as cluster:
        with pytest.raises(errors.ClusterUnavailable, match="503"):
            cluster.nodes()


def test_async_client_upload_and_info(
    stub: StubCoordinator, node: NodeProcess, slide_copy: Path
) -> None:
    stub.targets = [wire.Target(node_id="n1", url=node.url)]

    async def go() -> tuple[str, wire.BlobView]:
        async with slidestore.aconnect(stub.url, client_token()) as cluster:
            blob_id = await cluster.upload(slide_copy, progress=False)
            stub.blobs[blob_id] = [replica("n1", node.url)]
            return blob_id, await cluster.info(blob_id)

    blob_id, view = asyncio.run(go())
    assert blob_id == sha256_of(slide_copy) and view.blob_id == blob_id
    assert node_has(node, blob_id)


def test_a_large_file_goes_up_in_parallel_parts_joined_by_the_node(
    stub: StubCoordinator, node: NodeProcess, slide_copy: Path, tmp_path: Path
) -> None:
    # A slide followed by filler is still a slide (OpenSlide reads by offsets): 40 MiB
    # makes two parts of at least MIN_PART.
    big = tmp_path / "big.svs"
    with big.open("wb") as out:
        out.write(slide_copy.read_bytes())
        out.write(os.urandom((40 << 20) - slide_copy.stat().st_size))
    stub.targets = [wire.Target(node_id="n1", url=node.url)]
    offsets: list[int] = []
    with slidestore.connect(stub.url, client_token()) as cluster:
        blob_id = cluster.upload(big, progress=False, parts=4, on_offset=offsets.append)
    assert blob_id == sha256_of(big) and node_has(node, blob_id)
    assert offsets == sorted(offsets) and offsets[-1] == big.stat().st_size
    finals = [
        msgspec.json.decode(state.read_bytes())
        for state in (node.data_dir / "uploads").glob("*/state.json")
    ]
    assert [(f["concat"], len(f["parts"]), f["blob_id"]) for f in finals] == [("final", 2, blob_id)]
    with (
        slidestore.connect(stub.url, client_token()) as cluster,
        pytest.raises(errors.InvalidRequest, match="parts"),
    ):
        cluster.upload(big, progress=False, parts=0)
