"""End-to-end faults on a real cluster: a coordinator and four nodes as processes on
loopback (``slidestore_server.testing_cluster``), on SQLite and on PostgreSQL; also a node
joining a filled cluster, which rebalancing fills.

Timeouts are short (heartbeat 0.2 s, suspect 1 s, dead 2.5 s, loop 0.2 s), so a killed node
is repaired around in a few seconds. Every claim is checked on disk: the sha256 of each
replica file must be the blob id. The randomized run takes its length and seed from
``SLIDESTORE_FAULTS_SECONDS`` / ``SLIDESTORE_FAULTS_SEED`` (``nox -s faults`` runs it long).
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest

from slidestore import open_slide
from slidestore.cluster.model import NodeState
from slidestore.cluster.wire import Placement, PlacementRequest
from slidestore.protocols.deepzoom import DeepZoom
from slidestore.testing import cached_svs
from slidestore.tokens import Operation
from slidestore_server.testing_cluster import Cluster, database, eventually

R = 3
MakeCluster = Callable[..., Cluster]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def make_cluster(tmp_path: Path, database_url: str) -> Iterator[MakeCluster]:
    """``make_cluster(nodes=4, **Cluster options)``: started, SIGKILLed at teardown; the
    process logs' tails are printed then (pytest shows them when the test failed)."""
    started: list[Cluster] = []

    def make(**options: Any) -> Cluster:
        cluster = Cluster(
            tmp_path / f"cluster{len(started)}",
            database_url=database_url,
            **{"nodes": 4, **options},
        )
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.close()
        for name, text in cluster.logs():
            print(f"---- {name} (last 40 lines)")
            print("\n".join(text.splitlines()[-40:]))


@pytest.fixture(scope="session")
def base_slide() -> Path:
    """A generated ~0.9 MB slide (cached across runs)."""
    return cached_svs(2000, 1500, seed=11)


@pytest.fixture
def slides(base_slide: Path, tmp_path: Path) -> Callable[[int], Path]:
    """``slides(n)``: a distinct blob per ``n`` — the generated slide with ``n`` appended
    after its last byte (TIFF readers ignore it, so it still opens as the same slide)."""
    data = base_slide.read_bytes()
    directory = tmp_path / "slides"
    directory.mkdir()

    def make(n: int) -> Path:
        path = directory / f"slide-{n}.svs"
        if not path.exists():
            path.write_bytes(data + f"\n#variant {n}\n".encode())
        return path

    return make


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_every_copy_good(cluster: Cluster, blob_id: str, *, at_least: int = R) -> None:
    hashes = cluster.disk_hashes(blob_id)
    assert len(hashes) >= at_least, f"{blob_id[:12]}: copies on disk at {sorted(hashes)}"
    bad = {node: digest for node, digest in hashes.items() if digest != blob_id}
    assert not bad, f"{blob_id[:12]}: corrupt copies on nodes {sorted(bad)}"


# -- 1. kill -9 a replica holder ---------------------------------------------------------


def test_kill9_of_a_holder_restores_r_on_the_survivors(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    cluster = make_cluster()
    with cluster.client() as sdk:
        blob_id = sdk.upload(slides(1), wait="all", replicas=R, progress=False)
    assert blob_id == sha256_of(slides(1))
    assert cluster.durable(blob_id, R)
    victim = cluster.holders(blob_id)[0]
    victim_id = cluster.node_id(victim)
    cluster.kill(victim)

    view = cluster.wait_durable(blob_id, R, timeout=20)
    assert victim_id not in {r.node_id for r in view.replicas}
    survivors = [i for i in range(4) if i != victim]
    hashes = cluster.disk_hashes(blob_id)
    assert [hashes.get(i) for i in survivors] == [blob_id] * 3
    assert cluster.states()[victim_id] is NodeState.DEAD


# -- 2. kill -9 the primary mid-upload ---------------------------------------------------


def test_kill9_of_the_primary_mid_upload_resumes_elsewhere(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    cluster = make_cluster()
    path = slides(2)
    size = path.stat().st_size
    killed: list[int] = []

    def on_offset(offset: int) -> None:
        if not killed and offset >= 128 << 10:
            (primary,) = cluster.uploading()
            cluster.kill(primary)
            killed.append(primary)

    offsets: list[int] = []

    def record(offset: int) -> None:
        offsets.append(offset)
        on_offset(offset)

    with cluster.client() as sdk:
        blob_id = sdk.upload(
            path,
            wait="all",
            replicas=R,
            chunk_size=32 << 10,
            retries=3,
            on_offset=record,
            progress=False,
            wait_timeout=30,
        )
    assert killed, "the upload finished before the primary could be killed"
    assert blob_id == sha256_of(path)
    # The upload started over on another node: offsets went back down after the kill.
    restart = next(i for i in range(1, len(offsets)) if offsets[i] < offsets[i - 1])
    assert offsets[restart - 1] < size and offsets[-1] == size
    view = cluster.wait_durable(blob_id, R, timeout=20)
    assert cluster.node_id(killed[0]) not in {r.node_id for r in view.replicas}
    assert_every_copy_good(cluster, blob_id)


# -- 3. kill -9 the coordinator mid-repair -----------------------------------------------


def test_kill9_of_the_coordinator_mid_repair_then_repair_completes(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    # ~0.9 MB at 300 kB/s: each repair copy takes ~3 s.
    cluster = make_cluster(coordinator_settings={"copy_bytes_per_second": 300_000})
    with cluster.client() as sdk:
        blob_ids = [sdk.upload(slides(n), wait="all", replicas=R, progress=False) for n in (31, 32)]
    victim = cluster.holders(blob_ids[0])[0]
    cluster.kill(victim)
    endangered = [b for b in blob_ids if victim in cluster.holders(b)]

    def copying() -> bool:
        return any(any((n.data_dir / "blobs" / ".tmp").iterdir()) for n in cluster.nodes)

    eventually(copying, timeout=15, interval=0.05)
    cluster.kill_coordinator()
    assert not all(cluster.durable(b, R) for b in endangered), "repair was not in progress"
    time.sleep(0.5)
    cluster.restart_coordinator()

    for blob_id in blob_ids:
        cluster.wait_durable(blob_id, R, timeout=40)
        assert_every_copy_good(cluster, blob_id)
        hashes = cluster.disk_hashes(blob_id)
        assert all(hashes[i] == blob_id for i in cluster.holders(blob_id))


# -- 4. a full node gets no placements ---------------------------------------------------


def test_a_full_node_gets_no_placements(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    # 32 MiB of pretend capacity under a 64 MiB reserve: nothing may go there.
    full = 3
    cluster = make_cluster(per_node={full: {"capacity_bytes": 32 << 20}})
    full_id = cluster.node_id(full)
    view = cluster.nodes_view()[full_id]
    assert view.free_bytes < view.reserve_bytes

    token = cluster.token(Operation.WRITE)
    named: set[str] = set()
    for _ in range(30):
        answer = httpx.post(
            f"{cluster.coordinator.url}/v1/placements",
            content=msgspec.json.encode(
                PlacementRequest(size=1 << 20, sha256=secrets.token_hex(32), replicas=R)
            ),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code in (200, 201), answer.text
        placement = msgspec.json.decode(answer.content, type=Placement)
        # Fewer than R only if a node looked suspect for a moment on a loaded machine.
        assert 1 <= len(placement.targets) <= R
        named.update(t.node_id for t in placement.targets)
    assert full_id not in named
    assert named == {cluster.node_id(i) for i in range(3)}

    with cluster.client() as sdk:
        blob_ids = [sdk.upload(slides(n), wait="all", progress=False) for n in (41, 42, 43)]
    for blob_id in blob_ids:
        assert cluster.durable(blob_id, R)
        assert full not in cluster.holders(blob_id)
        assert full not in cluster.disk_hashes(blob_id)
        assert_every_copy_good(cluster, blob_id)


# -- 5. a flipped byte is found by the scrubber and repaired -----------------------------


def test_a_flipped_byte_is_scrubbed_and_the_copy_replaced(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    cluster = make_cluster()
    with cluster.client() as sdk:
        blob_id = sdk.upload(slides(5), wait="all", replicas=R, progress=False)
    victim = cluster.holders(blob_id)[1]
    cluster.flip_byte(victim, blob_id)
    assert cluster.disk_hashes(blob_id)[victim] != blob_id

    answer = cluster.scrub(victim)
    assert answer["quarantined"] == [blob_id]
    quarantine = cluster.nodes[victim].data_dir / "blobs" / ".quarantine"
    assert any(p.name.startswith(blob_id) for p in quarantine.iterdir())

    cluster.wait_durable(blob_id, R, timeout=20)
    assert_every_copy_good(cluster, blob_id)
    assert cluster.copies_made() >= 1


# -- 6. a short SIGSTOP is not a death ---------------------------------------------------


def test_a_pause_shorter_than_dead_after_is_not_a_death(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    cluster = make_cluster()
    with cluster.client() as sdk:
        blob_id = sdk.upload(slides(6), wait="all", replicas=R, progress=False)
    before = cluster.blob(blob_id)
    copies_before = cluster.copies_made()
    victim = cluster.holders(blob_id)[0]
    victim_id = cluster.node_id(victim)

    seen: list[NodeState] = []
    replica_counts: list[int] = []

    def watch(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            seen.append(cluster.states()[victim_id])
            replica_counts.append(len(cluster.blob(blob_id).replicas))
            time.sleep(0.05)

    cluster.pause(victim)
    watch(1.5)  # suspect after 1 s, dead after 2.5 s
    cluster.resume(victim)
    watch(2.5)  # long enough for a dead verdict or repair copies to show

    assert NodeState.SUSPECT in seen, "the pause was too short to be noticed"
    assert NodeState.DEAD not in seen
    assert seen[-1] is NodeState.ALIVE
    assert min(replica_counts) == R
    assert cluster.copies_made() == copies_before  # (the upload's own two pulls)
    after = cluster.blob(blob_id)
    assert {r.node_id for r in after.replicas} == {r.node_id for r in before.replicas}
    assert set(cluster.disk_hashes(blob_id)) == set(cluster.holders(blob_id))


# -- 7. a node joins a filled cluster: throttled rebalancing levels the fill -------------


REBALANCE_CAPACITY = 40 << 20


def rebalancing_cluster(path: Path, database_url: str, rate: float) -> Cluster:
    """Four nodes of 40 MiB, rebalancing on: two moves at a time of ``rate`` bytes/s."""
    return Cluster(
        path,
        nodes=4,
        database_url=database_url,
        coordinator_settings={
            "rebalance": "true",
            "rebalance_max_copies": 2,
            "rebalance_bytes_per_second": rate,
        },
        node_settings={"capacity_bytes": REBALANCE_CAPACITY, "reserve_bytes": 4 << 20},
    )


def fill_three(cluster: Cluster, slides: Callable[[int], Path]) -> list[str]:
    """Start nodes 0-2 (node 3 joins later) and store 12 blobs twice each on them."""
    cluster.start(nodes=[0, 1, 2])
    with cluster.client() as sdk:
        return [sdk.upload(slides(n), wait="all", replicas=2, progress=False) for n in range(12)]


def test_a_joining_node_is_filled_by_throttled_rebalancing(
    tmp_path: Path, database_url: str, slides: Callable[[int], Path]
) -> None:
    capacity = REBALANCE_CAPACITY
    rate = 1e6  # bytes/s per move: each ~0.9 MB blob takes about a second
    cluster = rebalancing_cluster(tmp_path / "rebalance", database_url, rate)
    moves = 'slidestore_cluster_rebalance_moves_total{result="ok"}'
    try:
        blob_ids = fill_three(cluster, slides)
        size = slides(0).stat().st_size
        assert cluster.metrics().get(moves, 0) == 0  # level so far: nothing moved
        assert not cluster.running(3)
        cluster.restart(3)
        cluster.wait_alive([3])  # registered: the coordinator counts its empty disk
        joined = time.monotonic()
        newcomer = cluster.node_id(3)

        def fills() -> dict[str, float]:
            return {
                node_id: 1 - view.free_bytes / view.capacity_bytes
                for node_id, view in cluster.nodes_view().items()
            }

        def level() -> bool:
            now = fills()
            # Within the 5% tolerance, give or take one blob (whole blobs move).
            return max(now.values()) - min(now.values()) <= 0.05 + size / capacity

        eventually(level, timeout=60, interval=0.2)
        took = time.monotonic() - joined
        # The planner goes on to its 5% tolerance: wait until a round adds nothing.
        moved = cluster.metrics().get(moves, 0)
        deadline = time.monotonic() + 60
        while True:
            time.sleep(2.5)  # a move (~1 s) plus the settling (two heartbeats) and more
            now = cluster.metrics().get(moves, 0)
            if now == moved:
                break
            moved = now
            assert time.monotonic() < deadline, "moves never stopped"
        assert level()
        on_newcomer = [
            b for b in blob_ids if newcomer in {r.node_id for r in cluster.blob(b).replicas}
        ]
        # The newcomer's share of 24 copies on 4 equal nodes is 6; each move is one copy.
        assert 4 <= len(on_newcomer) <= 7, fills()
        assert moved == len(on_newcomer)
        # The cap held: two moves at a time, each at most `rate` bytes/s.
        assert took >= (len(on_newcomer) // 2) * size / rate * 0.9, took
        for blob_id in blob_ids:
            # R copies, each verified, and the donors' files really gone.
            eventually(lambda b=blob_id: len(cluster.disk_hashes(b)) == 2, timeout=20)
            assert cluster.durable(blob_id, 2)
            assert_every_copy_good(cluster, blob_id, at_least=2)
    finally:
        cluster.close()
        for name, text in cluster.logs():
            print(f"---- {name} (last 40 lines)")
            print("\n".join(text.splitlines()[-40:]))


# -- 9. a bad copy is never served: checked on every read, quarantined, repaired -----------


def _first_tile(path: Path) -> tuple[int, int, int, int, np.ndarray]:
    """(offset, length) of level 0's tile (0, 0) in the file, its size and its pixels."""
    with open_slide(path) as local:
        extent = local.tile_extent(0, 0, 0)
        assert extent is not None
        info = local.metadata.levels[0]
        size = (info.tile_width, info.tile_height)
        pixels = local.read_region((0, 0), 0, size)
    return (*extent, *size, pixels)


def _corrupt_answer(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "replica_corrupt"


def _quarantined(cluster: Cluster, node: int, blob_id: str) -> bool:
    quarantine = cluster.nodes[node].data_dir / "blobs" / ".quarantine"
    return any(p.name.startswith(blob_id) for p in quarantine.iterdir())


def test_a_flipped_byte_in_a_tile_is_never_served(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    cluster = make_cluster()
    path = slides(91)
    with cluster.client() as sdk:
        blob_id = sdk.upload(path, wait="all", replicas=R, progress=False)
    offset, length, width, height, expected = _first_tile(path)
    bad, second, good = cluster.holders(blob_id)
    urls = [cluster.nodes[i].url for i in (bad, second, good)]  # the bad copy first
    cluster.flip_byte(bad, blob_id, offset + length // 2)
    copies = cluster.copies_made()

    # The SDK, sent to the bad copy first, reads the right pixels elsewhere...
    started = time.monotonic()
    with cluster.client() as sdk:
        remote = sdk.open(blob_id, replicas=urls)
        pixels = remote.read_region((0, 0), 0, (width, height))
        failovers = remote.store.replicas.failovers
    np.testing.assert_array_equal(pixels, expected)
    assert failovers >= 1
    assert time.monotonic() - started < 10
    assert _quarantined(cluster, bad, blob_id)
    # Reported at once: repair restores R without a scrub.
    eventually(lambda: cluster.copies_made() > copies, timeout=20)
    print(f"repair made a copy {time.monotonic() - started:.2f}s after the first bad read")
    cluster.wait_durable(blob_id, R, timeout=20)
    assert_every_copy_good(cluster, blob_id)

    # What the SDK saw: the node answers "this copy is bad" (not wrong pixels, not a 422).
    cluster.flip_byte(second, blob_id, offset + length // 3)
    chunk = f"{urls[1]}/zarr/{blob_id}/0/c/0/0/0"
    _corrupt_answer(httpx.get(chunk, headers=cluster.headers(Operation.READ), timeout=30))
    assert _quarantined(cluster, second, blob_id)
    cluster.wait_durable(blob_id, R, timeout=20)
    assert_every_copy_good(cluster, blob_id)


def test_a_flipped_byte_under_a_rendered_tile_is_never_rendered(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    """Tiles that are rendered (a Deep Zoom level between the scanner's, a derived zarr
    level) read the native tiles below them: a flipped byte in one is 503 from that
    node, never a 200 with wrong pixels, and the reader gets the right ones elsewhere."""
    cluster = make_cluster()
    path = slides(95)
    with cluster.client() as sdk:
        blob_id = sdk.upload(path, wait="all", replicas=R, progress=False)
    offset, length, *_ = _first_tile(path)
    with open_slide(path) as local:
        deepzoom = DeepZoom(local, encoded_cache_bytes=0)
        level = deepzoom.level_count - 2  # rendered from level 0's tiles (0..1, 0..1)
        assert deepzoom.passthrough_level(level) is None
        expected_tile = deepzoom.tile(level, 0, 0)
        assert local.pyramid.levels[1].native_level is None  # 2x2 means of level 0
        expected_chunk = local.pyramid.tile(1, 0, 0)
    bad, second, good = cluster.holders(blob_id)
    urls = [cluster.nodes[i].url for i in (bad, second, good)]  # the bad copy first
    cluster.flip_byte(bad, blob_id, offset + length // 2)
    copies = cluster.copies_made()

    # The SDK reading the derived zarr level, sent to the bad copy first: right pixels.
    with cluster.client() as sdk:
        remote = sdk.open(blob_id, replicas=urls)
        side = expected_chunk.shape[0]
        pixels = np.asarray(remote.pyramid["1"][:, :side, :side]).transpose(1, 2, 0)
        failovers = remote.store.replicas.failovers
    np.testing.assert_array_equal(pixels, expected_chunk[: pixels.shape[0], : pixels.shape[1]])
    assert failovers >= 1
    assert _quarantined(cluster, bad, blob_id)
    eventually(lambda: cluster.copies_made() > copies, timeout=30)
    cluster.wait_durable(blob_id, R, timeout=30)
    assert_every_copy_good(cluster, blob_id)

    # A viewer's Deep Zoom request: a bad copy refuses, a good one renders it right.
    cluster.flip_byte(second, blob_id, offset + length // 3)
    read = cluster.headers(Operation.READ)
    tile = f"/slides/{blob_id}_files/{level}/0_0.jpeg"
    _corrupt_answer(httpx.get(urls[1] + tile, headers=read, timeout=30))
    assert _quarantined(cluster, second, blob_id)
    answer = httpx.get(urls[2] + tile, headers=read, timeout=30)
    assert answer.status_code == 200 and answer.content == expected_tile
    cluster.wait_durable(blob_id, R, timeout=30)
    assert_every_copy_good(cluster, blob_id)


def test_a_truncated_copy_gets_no_short_200(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    cluster = make_cluster()
    path = slides(92)
    with cluster.client() as sdk:
        blob_id = sdk.upload(path, wait="all", replicas=R, progress=False)
    victim = cluster.holders(blob_id)[0]
    url = f"{cluster.nodes[victim].url}/blobs/{blob_id}"
    # The raw file needs download: a read token is refused before any byte is looked at.
    assert httpx.get(url, headers=cluster.headers(Operation.READ)).status_code == 403
    replica = cluster.replica_path(victim, blob_id)
    os.chmod(replica, 0o644)
    os.truncate(replica, path.stat().st_size // 2)
    copies = cluster.copies_made()

    answer = httpx.get(url, headers=cluster.headers(Operation.DOWNLOAD), timeout=30)
    _corrupt_answer(answer)
    assert _quarantined(cluster, victim, blob_id)
    # Gone from the node: a second try is "no copy here" or (repair is quick) the
    # repaired copy, whole — never a short answer.
    again = httpx.get(url, headers=cluster.headers(Operation.DOWNLOAD), timeout=30)
    assert again.status_code in (200, 404)
    if again.status_code == 200:
        assert hashlib.sha256(again.content).hexdigest() == blob_id
    eventually(lambda: cluster.copies_made() > copies, timeout=20)
    cluster.wait_durable(blob_id, R, timeout=20)
    assert_every_copy_good(cluster, blob_id)


def test_every_copy_corrupt_is_lost(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    cluster = make_cluster()
    path = slides(93)
    with cluster.client() as sdk:
        blob_id = sdk.upload(path, wait="all", replicas=R, progress=False)
    offset, length, *_ = _first_tile(path)
    holders = cluster.holders(blob_id)
    for node in holders:
        cluster.flip_byte(node, blob_id, offset + length // 2)
    for node in holders:
        chunk = f"{cluster.nodes[node].url}/zarr/{blob_id}/0/c/0/0/0"
        answer = httpx.get(chunk, headers=cluster.headers(Operation.READ), timeout=30)
        # A repair pull may have found the copy bad first (then it is already gone).
        assert answer.status_code in (503, 404), answer.text
        assert answer.status_code == 404 or answer.json()["error"] == "replica_corrupt"
        assert _quarantined(cluster, node, blob_id)

    eventually(lambda: cluster.blob(blob_id).status == "lost", timeout=20)
    status = eventually(lambda: (s := cluster.status())["blobs"]["lost"] == 1 and s, timeout=20)
    assert status["blobs"]["under_replicated"] == 0
    eventually(lambda: cluster.metrics().get("slidestore_cluster_blobs_lost") == 1, timeout=20)
    logs = dict(cluster.logs())
    lines = [ln for ln in logs["coordinator.log"].splitlines() if f"blob {blob_id} is lost" in ln]
    assert len(lines) == 1, lines
    assert "ERROR" in lines[0]


def test_a_frozen_holder_does_not_stall_reads(
    make_cluster: MakeCluster, slides: Callable[[int], Path]
) -> None:
    cluster = make_cluster()
    path = slides(94)
    with cluster.client() as sdk:
        blob_id = sdk.upload(path, wait="all", replicas=R, progress=False)
    *_, width, height, expected = _first_tile(path)
    holders = cluster.holders(blob_id)
    urls = [cluster.nodes[i].url for i in holders]  # the frozen one first
    cluster.pause(holders[0])
    try:
        started = time.monotonic()
        with cluster.client(timeout=30) as sdk:
            remote = sdk.open(blob_id, replicas=urls)
            pixels = remote.read_region((0, 0), 0, (width, height))
            hedges = remote.store.replicas.hedges
        elapsed = time.monotonic() - started
    finally:
        cluster.resume(holders[0])
    np.testing.assert_array_equal(pixels, expected)
    assert hedges >= 1
    assert elapsed < 10, f"the read took {elapsed:.1f}s with a frozen holder"


# -- 8. a seeded random mix of everything ------------------------------------------------


def test_randomized_faults(make_cluster: MakeCluster, slides: Callable[[int], Path]) -> None:
    # A fixed seed in the default suite (reproducible CI); ``nox -s faults`` draws new ones.
    seed = int(os.environ.get("SLIDESTORE_FAULTS_SEED") or 20261123)
    duration = float(os.environ.get("SLIDESTORE_FAULTS_SECONDS") or 20)
    print(f"randomized faults: seed={seed} duration={duration}s", flush=True)
    rng = random.Random(seed)
    cluster = make_cluster()
    run = FaultRun(cluster, slides, rng)
    try:
        run.go(duration)
    finally:
        run.stop()
    print(f"seed={seed}: {run.summary()}", flush=True)
    print(f"seed={seed} reads: {run.reads.summary()}", flush=True)
    lost, corrupt, short = run.verify(deadline=90)
    assert (lost, corrupt, short) == ([], [], []), f"seed={seed}: {run.summary()}"
    assert run.acknowledged, f"seed={seed}: no upload was acknowledged"
    assert run.reads.wrong_bytes == 0 and run.reads.short == 0, run.reads.summary()
    assert run.reads.verified_bytes > 0, run.reads.summary()


class ReadTally:
    """What the readers got: every byte compared with the source file."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reads = 0
        self.verified_bytes = 0
        self.wrong_bytes = 0
        """Bytes a node answered 2xx with that differ from the source: must stay 0."""
        self.short = 0
        """2xx answers with fewer bytes than asked (a truncated copy served): must stay 0."""
        self.corrupt_answers = 0
        """503 replica_corrupt: a node caught its bad copy instead of serving it."""
        self.other_failures = 0

    def summary(self) -> str:
        return (
            f"{self.reads} reads, {self.verified_bytes} bytes verified, "
            f"{self.wrong_bytes} wrong bytes, {self.short} short answers, "
            f"{self.corrupt_answers} replica_corrupt answers, {self.other_failures} other failures"
        )


class FaultRun:
    """Uploads from a thread while the main thread injects one fault at a time."""

    def __init__(self, cluster: Cluster, slides: Callable[[int], Path], rng: random.Random) -> None:
        self.cluster = cluster
        self.slides = slides
        self.rng = rng
        self.acknowledged: dict[str, Path] = {}
        self.upload_errors: list[str] = []
        self.events: list[str] = []
        self._stop = threading.Event()
        self._uploader = threading.Thread(target=self._upload_loop, daemon=True)
        self.reads = ReadTally()
        self._readers = [
            threading.Thread(target=self._read_loop, args=(random.Random(rng.random()),))
            for _ in range(2)
        ]
        self._started = time.monotonic()

    def _log(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self._started:6.1f}s {what}")

    def _upload_loop(self) -> None:
        n = 1000
        with self.cluster.client(retries=6) as sdk:
            while not self._stop.is_set():
                path = self.slides(n)
                n += 1
                try:
                    blob_id = sdk.upload(path, wait="primary", retries=4, progress=False)
                except Exception as exc:  # not acknowledged: allowed, counted
                    self.upload_errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    time.sleep(0.2)
                    continue
                assert blob_id == sha256_of(path)
                self.acknowledged[blob_id] = path

    def _read_loop(self, rng: random.Random) -> None:
        """Random ranges of random blobs from random holders (not only healthy ones),
        each compared byte for byte with the source file."""
        headers = self.cluster.headers(Operation.DOWNLOAD)
        tally = self.reads
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                if not self.acknowledged:
                    time.sleep(0.1)
                    continue
                blob_id = rng.choice(sorted(self.acknowledged))
                source = self.acknowledged[blob_id].read_bytes()
                node = rng.randrange(len(self.cluster.nodes))
                start = rng.randrange(len(source))
                end = min(len(source), start + rng.choice((1, 4096, 70_000, len(source))))
                try:
                    answer = http.get(
                        f"{self.cluster.nodes[node].url}/blobs/{blob_id}",
                        headers={**headers, "Range": f"bytes={start}-{end - 1}"},
                    )
                except httpx.HTTPError:
                    with tally.lock:
                        tally.other_failures += 1
                    continue
                with tally.lock:
                    tally.reads += 1
                    if answer.status_code == 206:
                        got, want = answer.content, source[start:end]
                        tally.short += len(got) < len(want)
                        tally.wrong_bytes += sum(a != b for a, b in zip(got, want, strict=False))
                        tally.verified_bytes += min(len(got), len(want))
                    elif answer.status_code == 503 and "replica_corrupt" in answer.text:
                        tally.corrupt_answers += 1
                    elif answer.status_code != 404:  # 404: this node holds no copy
                        tally.other_failures += 1

    def go(self, duration: float) -> None:
        cluster, rng = self.cluster, self.rng
        self._uploader.start()
        for reader in self._readers:
            reader.start()
        end = time.monotonic() + duration
        coordinator_at = time.monotonic() + duration * rng.uniform(0.3, 0.7)
        actions = ["kill", "pause", "flip", "corrupt", "coordinator", "rest"]
        while time.monotonic() < end:
            if coordinator_at and time.monotonic() >= coordinator_at:
                action, coordinator_at = "coordinator", 0.0
            else:
                action = rng.choices(actions, weights=[3, 3, 2, 3, 0.5, 1])[0]
            node = rng.randrange(len(cluster.nodes))
            if action == "kill":
                self._log(f"kill -9 node{node}")
                cluster.kill(node)
                time.sleep(rng.uniform(0.3, 4.0))
                cluster.restart(node)
                self._log(f"node{node} restarted")
            elif action == "pause":
                seconds = rng.uniform(0.3, 3.5)
                self._log(f"SIGSTOP node{node} for {seconds:.1f}s")
                cluster.pause(node)
                time.sleep(seconds)
                cluster.resume(node)
            elif action == "flip":
                self._flip(rng)
            elif action == "corrupt":
                self._corrupt(rng)
            elif action == "coordinator":
                self._log("kill -9 coordinator")
                cluster.kill_coordinator()
                time.sleep(rng.uniform(0.2, 1.5))
                cluster.restart_coordinator()
                self._log("coordinator restarted")
            time.sleep(rng.uniform(0.2, 1.5))

    def _flip(self, rng: random.Random) -> None:
        """Corrupt one copy of a blob that has all R copies, and scrub that node."""
        cluster = self.cluster
        candidates = sorted(self.acknowledged)
        rng.shuffle(candidates)
        for blob_id in candidates[:5]:
            try:
                holders = cluster.holders(blob_id)
            except (httpx.HTTPError, KeyError):
                continue
            if len(holders) < R:
                continue
            node = rng.choice(holders)
            path = cluster.replica_path(node, blob_id)
            size = self._copy_size(path, blob_id) if path.exists() else 0
            if size == 0:
                continue
            self._log(f"flip a byte of {blob_id[:12]} on node{node}")
            cluster.flip_byte(node, blob_id, offset=rng.randrange(size))
            found = cluster.scrub(node)["quarantined"]
            self._log(f"scrub node{node}: quarantined {[b[:12] for b in found]}")
            return

    def _copy_size(self, path: Path, blob_id: str) -> int:
        """Bytes a flip may land in: the copy may be short already (an earlier truncation
        no reader has met yet), and a flip past its end would only grow it."""
        return min(blob_size(self, blob_id), path.stat().st_size)

    def _corrupt(self, rng: random.Random) -> None:
        """Flip a bit or truncate one copy and leave it for the readers to find (no scrub):
        every read of it must be refused, never answered with its bytes."""
        cluster = self.cluster
        for blob_id in rng.sample(sorted(self.acknowledged), min(5, len(self.acknowledged))):
            node = rng.randrange(len(cluster.nodes))
            path = cluster.replica_path(node, blob_id)
            if not path.exists():
                continue
            size = self._copy_size(path, blob_id)
            if size == 0:
                continue
            if rng.random() < 0.5:
                self._log(f"flip a bit of {blob_id[:12]} on node{node}")
                cluster.flip_byte(node, blob_id, offset=rng.randrange(size))
            else:
                self._log(f"truncate {blob_id[:12]} on node{node}")
                os.chmod(path, 0o644)
                os.truncate(path, rng.randrange(size))
            return

    def stop(self) -> None:
        """Faults off: every node running and unpaused, the uploader and readers finished,
        and a scrub on every node for copies no reader happened to touch."""
        cluster = self.cluster
        for node in list(cluster.paused):
            cluster.resume(node)
        if cluster.coordinator.proc is None:
            cluster.restart_coordinator()
        for node in range(len(cluster.nodes)):
            if not cluster.running(node):
                cluster.restart(node)
        self._stop.set()
        self._uploader.join(timeout=180)
        assert not self._uploader.is_alive(), "an upload hung"
        for reader in self._readers:
            reader.join(timeout=60)
            assert not reader.is_alive(), "a read hung"
        cluster.wait_alive(timeout=60)
        for node in range(len(cluster.nodes)):
            cluster.scrub(node)

    def verify(self, *, deadline: float) -> tuple[list[str], list[str], list[str]]:
        """(lost, corrupt, short of R) blob ids, once every blob had ``deadline`` s."""
        cluster = self.cluster
        end = time.monotonic() + deadline
        pending = set(self.acknowledged)
        while pending and time.monotonic() < end:
            pending = {b for b in pending if not cluster.durable(b, R)}
            time.sleep(0.2)
        lost, corrupt = [], []
        for blob_id in self.acknowledged:
            hashes = cluster.disk_hashes(blob_id)
            if blob_id not in hashes.values():
                lost.append(blob_id)
            if any(digest != blob_id for digest in hashes.values()):
                corrupt.append(blob_id)
        return lost, corrupt, sorted(pending)

    def summary(self) -> str:
        return (
            f"{len(self.acknowledged)} uploads acknowledged, {len(self.upload_errors)} failed "
            f"(not acknowledged: {self.upload_errors[:3]}); faults: {self.events}"
        )


def blob_size(run: FaultRun, blob_id: str) -> int:
    return run.acknowledged[blob_id].stat().st_size
