"""The client SDK against real node processes: tus uploads (resumed across a node's
``kill -9`` and restart), and pyramid reads through ``FailoverHTTPStore`` that keep going
when the replica being read is killed. The coordinator is the stub of ``client_harness``."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import zarr
from client_harness import SECRET, StubCoordinator, client_token, replica

import slidestore
from slidestore import tokens
from slidestore.client import TusOptions, TusUpload, connect
from slidestore.client.http import Transport
from slidestore.client.replicas import ReplicaSet
from slidestore.client.slide import AsyncRemoteSlide
from slidestore.client.tus import GrantSpent
from slidestore.errors import BlobNotFound, ChecksumMismatch, ClusterUnavailable, OutOfBounds
from slidestore.pyramid import open_pyramid
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess, free_port


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tus_upload(node_url: str, path: Path, **options: float) -> str:
    async def go() -> str:
        async with httpx.AsyncClient() as client:
            upload = TusUpload(
                client,
                node_url + "/uploads",
                client_token(),
                path,
                size=path.stat().st_size,
                sha256=sha256_of(path),
                options=TusOptions(**options),  # type: ignore[arg-type]
            )
            return await upload.run()

    return asyncio.run(go())


def start_node(tmp_path_factory: pytest.TempPathFactory, name: str) -> NodeProcess:
    return NodeProcess(tmp_path_factory.mktemp(name) / "data", settings={"secret": SECRET}).start()


@pytest.fixture(scope="module")
def slide_copy(generated_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copy(generated_svs, tmp_path_factory.mktemp("slide") / "generated.svs"))


@pytest.fixture(scope="module")
def stub() -> Iterator[StubCoordinator]:
    coordinator = StubCoordinator().start()
    yield coordinator
    coordinator.stop()


@pytest.fixture
def two_nodes(
    tmp_path_factory: pytest.TempPathFactory, slide_copy: Path, stub: StubCoordinator
) -> Iterator[tuple[NodeProcess, NodeProcess, str]]:
    """Two nodes both holding the generated slide (uploaded with the client's tus code),
    registered in the stub as its replicas, A first."""
    nodes = [start_node(tmp_path_factory, "node-a"), start_node(tmp_path_factory, "node-b")]
    try:
        blob_id = ""
        for node in nodes:
            blob_id = tus_upload(node.url, slide_copy)
        stub.blobs[blob_id] = [replica("a", nodes[0].url), replica("b", nodes[1].url)]
        yield nodes[0], nodes[1], blob_id
    finally:
        for node in nodes:
            node.kill(signal.SIGKILL)


def level_array(group: zarr.Group, name: str) -> zarr.Array[Any]:
    array = group[name]
    assert isinstance(array, zarr.Array)
    return array


def references(path: Path) -> dict[int, np.ndarray]:
    """Native pyramid levels read whole from the file: pyramid index → (h, w, 3)."""
    out: dict[int, np.ndarray] = {}
    with slidestore.open_slide(path) as slide:
        for level in open_pyramid(slide).levels:
            if level.native_level is not None:
                info = slide.levels[level.native_level]
                out[level.index] = slide.read_region((0, 0), info.index, (info.width, info.height))
    return out


# -- tus -------------------------------------------------------------------------------


def test_tus_upload_stores_the_file_under_its_sha256(
    tmp_path_factory: pytest.TempPathFactory, slide_copy: Path
) -> None:
    node = start_node(tmp_path_factory, "tus")
    try:
        blob_id = tus_upload(node.url, slide_copy, chunk_size=300_000)
        assert blob_id == sha256_of(slide_copy)
        stored = httpx.get(
            f"{node.url}/blobs/{blob_id}", headers={"Authorization": f"Bearer {client_token()}"}
        )
        assert stored.status_code == 200
        assert stored.content == slide_copy.read_bytes()
    finally:
        node.kill()


def test_tus_upload_of_a_changed_file_is_refused(
    tmp_path_factory: pytest.TempPathFactory, slide_copy: Path, tmp_path: Path
) -> None:
    """The declared whole-file sha256 no longer matches the bytes: 460, nothing kept."""
    node = start_node(tmp_path_factory, "tus-changed")
    try:
        changed = tmp_path / "changed.svs"
        data = bytearray(slide_copy.read_bytes())
        data[-1] ^= 0xFF
        changed.write_bytes(bytes(data))

        async def go() -> str:
            async with httpx.AsyncClient() as client:
                return await TusUpload(
                    client,
                    node.url + "/uploads",
                    client_token(),
                    changed,
                    size=len(data),
                    sha256=sha256_of(slide_copy),
                ).run()

        with pytest.raises(ChecksumMismatch, match="460"):
            asyncio.run(go())
    finally:
        node.kill()


def test_tus_upload_resumes_after_the_node_is_killed_and_restarted(
    tmp_path_factory: pytest.TempPathFactory, slide_copy: Path
) -> None:
    size = slide_copy.stat().st_size
    chunk = 128 * 1024
    assert size > 6 * chunk
    node = start_node(tmp_path_factory, "tus-restart")
    offsets: list[int] = []
    sent: list[int] = []
    restarted = threading.Event()

    def restart_later() -> None:
        time.sleep(1.0)
        node.start()
        restarted.set()

    restarter = threading.Thread(target=restart_later, daemon=True)

    def on_offset(offset: int) -> None:
        offsets.append(offset)
        if offset >= 3 * chunk and not restarted.is_set() and node.proc is not None:
            node.kill(signal.SIGKILL)
            restarter.start()

    async def count(request: httpx.Request) -> None:
        if request.method == "PATCH":
            sent.append(len(request.content))

    async def go() -> str:
        async with httpx.AsyncClient(event_hooks={"request": [count]}) as client:
            return await TusUpload(
                client,
                node.url + "/uploads",
                client_token(),
                slide_copy,
                size=size,
                sha256=sha256_of(slide_copy),
                options=TusOptions(chunk_size=chunk, retries=30, backoff=0.1, max_backoff=0.5),
                progress=on_offset,
            ).run()

    try:
        blob_id = asyncio.run(go())
        assert restarted.is_set()
        assert blob_id == sha256_of(slide_copy)
        # Resumed, not restarted: offsets only grow, and hardly more than the file was sent.
        assert offsets == sorted(offsets)
        assert offsets[-1] == size
        assert sum(sent) < size + 2 * chunk
        headers = {"Authorization": f"Bearer {client_token()}"}
        stored = httpx.get(f"{node.url}/blobs/{blob_id}", headers=headers)
        assert stored.content == slide_copy.read_bytes()
    finally:
        if restarter.is_alive():
            restarter.join(timeout=60)
        node.kill()


# -- reading ---------------------------------------------------------------------------


def test_remote_slide_matches_the_local_file(
    two_nodes: tuple[NodeProcess, NodeProcess, str], stub: StubCoordinator, slide_copy: Path
) -> None:
    _, _, blob_id = two_nodes
    with connect(stub.url, client_token()) as cluster, slidestore.open_slide(slide_copy) as local:
        remote = cluster.open(blob_id)
        assert remote.metadata == local.metadata
        assert [r.node_id for r in remote.replicas] == ["a", "b"]
        group = remote.pyramid
        for index, expected in references(slide_copy).items():
            array = level_array(group, str(index))
            assert np.array_equal(np.asarray(array[:]).transpose(1, 2, 0), expected)
        for level in range(local.level_count):
            ds = int(local.levels[level].downsample)
            location, size = (ds * 37, ds * 11), (300, 200)
            assert np.array_equal(
                remote.read_region(location, level, size), local.read_region(location, level, size)
            )
        # Partly outside: background fill like the local slide; wholly outside: OutOfBounds.
        w, h = local.dimensions
        assert np.array_equal(
            remote.read_region((w - 50, h - 20), 0, (100, 60)),
            local.read_region((w - 50, h - 20), 0, (100, 60)),
        )
        with pytest.raises(OutOfBounds):
            remote.read_region((w + 10, 0), 0, (10, 10))
        thumb = remote.thumbnail(128)
        assert thumb.dtype == np.uint8 and max(thumb.shape[:2]) == 128 and thumb.shape[2] == 3
    assert_lists_like_the_local_one(stub, slide_copy, two_nodes[1], blob_id)


def test_pyramid_read_survives_kill_of_the_replica_being_read(
    two_nodes: tuple[NodeProcess, NodeProcess, str], stub: StubCoordinator, slide_copy: Path
) -> None:
    node_a, node_b, blob_id = two_nodes
    expected = references(slide_copy)[0]
    with connect(stub.url, client_token()) as cluster:
        remote = cluster.open(blob_id)
        replicas = remote.store.replicas
        array = level_array(remote.pyramid, "0")
        tile_h = array.chunks[1]
        top = np.asarray(array[:, :tile_h, :])
        assert replicas.served[node_a.url] > 0 and replicas.served[node_b.url] == 0
        assert replicas.failovers == 0

        node_a.kill(signal.SIGKILL)
        rest = np.asarray(array[:, tile_h:, :])
        image = np.concatenate([top, rest], axis=1).transpose(1, 2, 0)
        assert np.array_equal(image, expected)
        assert replicas.failovers > 0
        assert replicas.served[node_b.url] > 0


def test_concurrent_kill_mid_read(
    two_nodes: tuple[NodeProcess, NodeProcess, str], stub: StubCoordinator, slide_copy: Path
) -> None:
    """The kill lands while one whole-level read (many concurrent chunk requests) runs."""
    node_a, node_b, blob_id = two_nodes
    expected = references(slide_copy)[0]
    with connect(stub.url, client_token()) as cluster:
        remote = cluster.open(blob_id)
        replicas = remote.store.replicas

        def killer() -> None:
            while replicas.served[node_a.url] < 4:
                time.sleep(0.001)
            node_a.kill(signal.SIGKILL)

        thread = threading.Thread(target=killer)
        thread.start()
        image = np.asarray(level_array(remote.pyramid, "0")[:]).transpose(1, 2, 0)
        thread.join()
        assert np.array_equal(image, expected)
        assert replicas.served[node_a.url] >= 4
        assert replicas.served[node_b.url] > 0


def test_all_replicas_dead_refreshes_from_the_coordinator(
    two_nodes: tuple[NodeProcess, NodeProcess, str], stub: StubCoordinator, slide_copy: Path
) -> None:
    """The client knows only A; A dies; the coordinator now says B: reads move to B."""
    node_a, node_b, blob_id = two_nodes
    stub.blobs[blob_id] = [replica("a", node_a.url)]
    expected = references(slide_copy)
    with connect(stub.url, client_token()) as cluster:
        remote = cluster.open(blob_id)
        assert remote.store.replicas.urls == [node_a.url]
        node_a.kill(signal.SIGKILL)
        stub.blobs[blob_id] = [replica("a", node_a.url), replica("b", node_b.url)]
        level = max(expected)
        image = np.asarray(level_array(remote.pyramid, str(level))[:]).transpose(1, 2, 0)
        assert np.array_equal(image, expected[level])
        assert remote.store.replicas.refreshes == 1
        assert [r.node_id for r in remote.replicas] == ["a", "b"]


def test_no_replica_answers_raises_cluster_unavailable(
    two_nodes: tuple[NodeProcess, NodeProcess, str], stub: StubCoordinator
) -> None:
    node_a, node_b, blob_id = two_nodes
    with connect(stub.url, client_token()) as cluster:
        remote = cluster.open(blob_id)
        node_a.kill(signal.SIGKILL)
        node_b.kill(signal.SIGKILL)
        with pytest.raises(ClusterUnavailable) as caught:
            remote.read_region((0, 0), 0, (10, 10))
        assert isinstance(caught.value, ConnectionError)
        assert blob_id in str(caught.value)


def test_async_client_reads_the_same_pixels(
    two_nodes: tuple[NodeProcess, NodeProcess, str], stub: StubCoordinator, slide_copy: Path
) -> None:
    _, _, blob_id = two_nodes

    async def go() -> tuple[np.ndarray, int]:
        async with slidestore.aconnect(stub.url, client_token()) as cluster:
            remote = await cluster.open(blob_id)
            pixels = await remote.read_region((512, 256), 0, (400, 300))
            group = await remote.pyramid()
            return pixels, len(remote.info.pyramid_levels) - (0 if await group.contains("0") else 1)

    pixels, levels = asyncio.run(go())
    with slidestore.open_slide(slide_copy) as local:
        assert np.array_equal(pixels, local.read_region((512, 256), 0, (400, 300)))
        assert levels == len(open_pyramid(local).levels)


def assert_lists_like_the_local_one(
    stub: StubCoordinator, slide_copy: Path, node: NodeProcess, blob_id: str
) -> None:
    """Notebooks and napari list groups: keys, members and tree come from a replica."""

    async def local_keys(store: Any) -> tuple[list[str], list[str], list[str]]:
        everything = [k async for k in store.list()]
        level0 = [k async for k in store.list_prefix("0/")]
        top = [k async for k in store.list_dir("")]
        return everything, level0, top

    with connect(stub.url, client_token()) as cluster, slidestore.open_slide(slide_copy) as local:
        remote = cluster.open(blob_id)
        expected = asyncio.run(local_keys(local.pyramid.store))
        assert asyncio.run(local_keys(remote.store)) == expected
        assert "zarr.json" in expected[0] and "0/c/0/0/0" in expected[0]
        group = zarr.open_group(remote.store, mode="r", zarr_format=3)
        local_group = zarr.open_group(local.pyramid.store, mode="r", zarr_format=3)
        names = sorted(name for name, _ in group.members())
        assert names == sorted(name for name, _ in local_group.members())
        assert names == [str(i) for i in range(len(local.pyramid.levels))]
        assert sorted(remote.pyramid.array_keys()) == names
        assert str(group.tree()) == str(local_group.tree())
    # The listing is a read of this blob: a read token for another blob is refused.
    other = tokens.mint(SECRET, ops={Operation.READ}, blob="ab" * 32, ttl=600)
    refused = httpx.get(
        f"{node.url}/zarr/{blob_id}",
        params={"list": "dir", "prefix": ""},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert refused.status_code == 403
    bad = httpx.get(
        f"{node.url}/zarr/{blob_id}",
        params={"list": "everything"},
        headers={"Authorization": f"Bearer {client_token(Operation.READ)}"},
    )
    assert bad.status_code == 400 and bad.json()["error"]


def test_open_by_node_urls_without_coordinator(
    two_nodes: tuple[NodeProcess, NodeProcess, str], slide_copy: Path
) -> None:
    """``open(blob_id, replicas=[urls])``: no coordinator needed (nor used: the URL is dead)."""
    _, node_b, blob_id = two_nodes
    dead = f"http://127.0.0.1:{free_port()}"

    async def go() -> np.ndarray:
        transport = Transport(dead, client_token(), retries=0)
        try:
            remote = await AsyncRemoteSlide.open(transport, blob_id, replicas=[dead, node_b.url])
            assert isinstance(remote.replica_set, ReplicaSet)
            return await remote.read_region((0, 0), 1, (64, 64))
        finally:
            await transport.aclose()

    with slidestore.open_slide(slide_copy) as local:
        assert np.array_equal(asyncio.run(go()), local.read_region((0, 0), 1, (64, 64)))


def test_replicas_without_the_blob_mean_blob_not_found(
    two_nodes: tuple[NodeProcess, NodeProcess, str], stub: StubCoordinator
) -> None:
    """Every replica answers 404 blob_not_found (deleted behind our back): BlobNotFound,
    after one refresh of the replica list."""
    node_a, node_b, blob_id = two_nodes
    with connect(stub.url, client_token()) as cluster:
        remote = cluster.open(blob_id)
        for node in (node_a, node_b):
            response = httpx.delete(
                f"{node.url}/blobs/{blob_id}",
                headers={"Authorization": f"Bearer {client_token()}"},
            )
            assert response.status_code == 204, response.text
        with pytest.raises(BlobNotFound, match="holds it"):
            remote.thumbnail(64)
        assert remote.store.replicas.refreshes == 1


def test_a_spent_upload_grant_is_named_so_the_sdk_places_again(
    tmp_path_factory: pytest.TempPathFactory, slide_copy: Path
) -> None:
    """A placement's grant makes one session; a second POST with it (the first answer was
    lost) is ``GrantSpent``, which ``upload`` answers with a new placement."""
    node = start_node(tmp_path_factory, "grant-spent")
    size, digest = slide_copy.stat().st_size, sha256_of(slide_copy)
    grant = tokens.mint(SECRET, ops={Operation.UPLOAD}, blob=digest, size=size, ttl=600)

    async def upload() -> str:
        async with httpx.AsyncClient() as client:
            run = TusUpload(
                client, node.url + "/uploads", grant, slide_copy, size=size, sha256=digest
            )
            return await run.run()

    try:
        assert asyncio.run(upload()) == digest
        with pytest.raises(GrantSpent):
            asyncio.run(upload())
    finally:
        node.stop()
