"""Analysis on a real Dask scheduler and workers next to real storage nodes.

Three storage nodes (a coordinator and three node processes), a ``dask scheduler``
subprocess, a Dask worker per holder node started with ``slidestore-server dask-worker``
(the node's data directory and a ``node-<id>`` resource) and one plain ``dask worker``.
The tiles of a blob run only on workers of nodes holding it and read the blob file
there; unrestricted, the plain worker reads over HTTP; a worker killed with SIGKILL
mid-run changes nothing in the result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

import slidestore
from slidestore import analysis, errors, open_slide
from slidestore.analysis.locality import resource_name
from slidestore.analysis.testing import STATS
from slidestore.testing import cached_svs
from slidestore.testing.ports import free_port
from slidestore.tokens import Operation
from slidestore_server.testing_cluster import Cluster, eventually

pytestmark = [
    pytest.mark.timeout(300),
    # About 100 s on the shared 2-core machine (3 storage nodes, a scheduler, 3 workers):
    # run by `nox -s analysis_cluster`, not the default suite.
    pytest.mark.skipif(
        not os.environ.get("SLIDESTORE_ANALYSIS_CLUSTER"),
        reason="long cross-process run: nox -s analysis_cluster",
    ),
]

SLIDE = {"width": 3000, "height": 2400, "seed": 11, "islands": 2}


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # Our own process group (start_new_session): the nanny and the worker it started.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def slide_path() -> Path:
    return cached_svs(SLIDE["width"], SLIDE["height"], seed=SLIDE["seed"], islands=SLIDE["islands"])


@pytest.fixture(scope="module")
def storage(
    tmp_path_factory: pytest.TempPathFactory, slide_path: Path
) -> Iterator[tuple[Cluster, str]]:
    root = tmp_path_factory.mktemp("storage")
    with Cluster(root, nodes=3) as cluster:
        with cluster.client() as sdk:
            blob_id = sdk.upload(slide_path, wait="all", replicas=2, progress=False)
        yield cluster, blob_id


@pytest.fixture(scope="module")
def dask_cluster(
    storage: tuple[Cluster, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Client, dict[str, int]]]:
    """The scheduler, a locality worker per holder node and one plain worker.

    Returns the client and, per worker address, the index of its node (-1: plain)."""
    cluster, blob_id = storage
    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    processes = [
        _spawn(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--dashboard-address",
                ":0",
            ],
            logs / "scheduler.log",
        )
    ]
    holders = cluster.holders(blob_id)
    try:
        for index in holders:
            processes.append(
                _spawn(
                    [
                        sys.executable,
                        "-m",
                        "slidestore_server.cli",
                        "dask-worker",
                        "--scheduler",
                        address,
                        "--node-data-dir",
                        str(cluster.nodes[index].data_dir),
                        "--nworkers",
                        "1",
                    ],
                    logs / f"worker-node{index}.log",
                )
            )
        processes.append(
            _spawn(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1"],
                logs / "worker-plain.log",
            )
        )
        client = Client(address, timeout=60, set_as_default=False)
        client.wait_for_workers(len(holders) + 1, timeout=120)
        nodes_of = {resource_name(cluster.node_id(i)): i for i in range(3)}
        where = {
            addr: next((nodes_of[r] for r in (info.get("resources") or {}) if r in nodes_of), -1)
            for addr, info in client.scheduler_info()["workers"].items()
        }
        yield client, where
        client.close()
    finally:
        for process in reversed(processes):
            _stop(process)


def _pids(client: Client) -> dict[str, int]:
    return client.run(os.getpid)  # type: ignore[no-any-return]


def test_blob_tiles_run_on_holder_nodes_and_read_the_blob_file(
    storage: tuple[Cluster, str], dask_cluster: tuple[Client, dict[str, int]], slide_path: Path
) -> None:
    cluster, blob_id = storage
    client, where = dask_cluster
    # A read token is all analysis needs; it cannot delete the slide.
    with slidestore.connect(cluster.coordinator.url, cluster.token(Operation.READ)) as reader:
        remote = reader.open(blob_id)
        result = analysis.run(STATS, remote, client=client, progress=False)
        with pytest.raises(errors.SlidestoreError):
            reader.delete(blob_id)
    local = analysis.run(STATS, open_slide(slide_path), client=client, progress=False)
    assert result.features == local.features
    assert result.measurements.column("sha256") == local.measurements.column("sha256")
    prov = result.provenance
    assert prov["slide"]["sha256"] == blob_id
    assert prov["engine"]["kind"] == "scheduler" and prov["engine"]["workers"] == 3
    assert prov["bytes"]["remote"] == 0 and prov["bytes"]["local"] > 0
    pids = _pids(client)
    holders = set(cluster.holders(blob_id))
    allowed = {pids[a] for a, node in where.items() if node in holders}
    used = set(result.measurements.column("pid").to_pylist())
    assert used <= allowed and len(holders) == 2


def test_without_node_ids_tiles_read_over_http_anywhere(
    storage: tuple[Cluster, str], dask_cluster: tuple[Client, dict[str, int]], slide_path: Path
) -> None:
    cluster, blob_id = storage
    client, where = dask_cluster
    urls = [cluster.nodes[i].url for i in cluster.holders(blob_id)]
    with slidestore.connect(cluster.coordinator.url, cluster.token(Operation.READ)) as reader:
        # Opened by URL: no node ids, so no restriction; the plain worker reads over HTTP.
        remote = reader.open(blob_id, replicas=urls)
        result = remote.analyze(STATS, client=client, progress=False)  # = analysis.run
    local = analysis.run(STATS, open_slide(slide_path), client=client, progress=False)
    assert result.features == local.features
    assert result.measurements.column("sha256") == local.measurements.column("sha256")
    plain = {_pids(client)[a] for a, node in where.items() if node == -1}
    rows = result.measurements.to_pylist()
    assert any(r["pid"] in plain for r in rows)
    assert result.provenance["bytes"]["remote"] > 0


def test_a_worker_killed_mid_run_changes_nothing(
    dask_cluster: tuple[Client, dict[str, int]], slide_path: Path
) -> None:
    client, _ = dask_cluster
    reference = analysis.run(STATS, open_slide(slide_path), client=client, progress=False)
    victim_address = sorted(_pids(client))[0]
    victim = _pids(client)[victim_address]
    killed = threading.Event()

    def kill_when_busy() -> None:
        # Kill once the victim is running a tile of ours.
        def busy() -> bool:
            processing = client.processing(workers=[victim_address]).get(victim_address, ())
            return any("slidestore-tile-stats" in str(key) for key in processing)

        eventually(busy, timeout=60, interval=0.02)
        time.sleep(0.2)
        os.kill(victim, signal.SIGKILL)
        killed.set()

    thread = threading.Thread(target=kill_when_busy, daemon=True)
    thread.start()
    result = analysis.run(
        STATS, open_slide(slide_path), {"delay": 0.05}, client=client, progress=False
    )
    thread.join(timeout=60)
    assert killed.is_set()
    assert victim not in _pids(client).values()
    assert result.features == reference.features
    assert result.measurements.drop_columns(["pid"]).equals(
        reference.measurements.drop_columns(["pid"])
    )
    assert result.provenance["params"] == {"fail_on": None, "delay": 0.05}
