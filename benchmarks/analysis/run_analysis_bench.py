"""``nox -s analysis_bench``: the analysis engine's figures, as ratios measured in one run.

1. Level-0 decode over the tissue tiles of a band of the 60000x50000 generated slide:
   the engine (one worker, through the pyramid) vs the same JPEG decoder on the raw tiles
   in a tight loop (the limit) vs a loop of ``openslide.read_region``, in megapixels per
   CPU second (what one core does; on a loaded machine the figure that compares) and per
   second of wall time. Goal >= 70 % of the limit.
2. The same band on 2 workers vs 1: the work done per CPU second of the workers with 2
   vs with 1 (scaling efficiency, meaningful at any load) and the wall-clock ratio,
   labelled with the load average it was measured at. Goal >= 1.7x wall on an idle
   2-core machine.
3. ``nuclei`` over the whole slide (``--quick``: a band of it) on 2 fresh workers:
   tiles/s and peak RSS per worker (goal < 1 GB).
4. Locality (not with ``--quick``): a 3-node cluster (coordinator + 3 node processes, as
   ``dev-cluster``) with a Dask worker per node; share of tile bytes read from the local
   blob file. Goal >= 95 %.

``--quick`` takes about two minutes on an idle 2-core machine; the full run adds the
whole-slide ``nuclei`` run and the locality cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openslide
from distributed import Client, LocalCluster

from slidestore import analysis, imaging, open_slide
from slidestore.analysis.dask_client import local_cluster
from slidestore.analysis.model import InputSpec
from slidestore.analysis.planning import choose_read, plan_tiles, tissue_plan_mask
from slidestore.analysis.sources import LocalSource
from slidestore.analysis.testing import ReadOnlyModel
from slidestore.testing import cached_svs

BIG = (60000, 50000)
TILE = 240  # the generated slide's native tile: the read-only model reads whole native tiles
BAND_ROWS = int(os.environ.get("SLIDESTORE_BENCH_BAND_ROWS", "32"))
"""Rows of 240 px tiles across the slide: about 4500 tissue tiles, 260 MP, 1.5 s of
decoding on one core (runs long enough that a run's fixed costs do not set the ratios)."""
NUCLEI_QUICK_ROWS = 4  # rows of 512 px nuclei tiles in the --quick band
REPEATS = 3

rows: list[tuple[str, str, str]] = []


def report(label: str, value: str, goal: str = "") -> None:
    rows.append((label, value, goal))
    print(f"  {label}: {value} {goal}", flush=True)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} (1 min), {five:.1f} (5 min)"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_cpu() -> float:
    """CPU seconds of this process, every thread (run on each worker)."""
    return time.process_time()


def cluster(workers: int) -> tuple[LocalCluster, Client]:
    local = local_cluster(workers)  # as the embedded default makes it
    return local, Client(local, set_as_default=False)


def band_region(height: int, rows_: int, tile: int) -> tuple[int, int, int, int]:
    rows_px = rows_ * tile
    top = (height // 2 // tile) * tile - rows_px // 2
    return 0, top, BIG[0], rows_px


@dataclass(frozen=True)
class Rate:
    """Megapixels over wall seconds and over CPU seconds."""

    megapixels: float
    wall: float
    cpu: float

    @property
    def per_wall(self) -> float:
        return self.megapixels / self.wall

    @property
    def per_cpu(self) -> float:
        return self.megapixels / self.cpu

    def __str__(self) -> str:
        return f"{self.per_cpu:.1f} MP/CPU-s, {self.per_wall:.1f} MP/s wall"


def median_rate(rates: list[Rate]) -> Rate:
    return Rate(
        statistics.median(r.megapixels for r in rates),
        statistics.median(r.wall for r in rates),
        statistics.median(r.cpu for r in rates),
    )


def timed_loop(megapixels: float, loop: Any) -> Rate:
    wall, cpu = time.perf_counter(), time.process_time()
    loop()
    return Rate(megapixels, time.perf_counter() - wall, time.process_time() - cpu)


def decode_figures(path: Path, region: tuple[int, int, int, int]) -> tuple[int, Rate, Rate]:
    source = LocalSource(path)
    model = ReadOnlyModel(input=InputSpec(tile_size=TILE, level=0))
    read = choose_read(source, model.input)
    jobs = plan_tiles(read, model.input, region, tissue_plan_mask(source))
    slide = open_slide(path)
    raw = [slide.raw_tile(0, j.ox // TILE, j.oy // TILE) for j in jobs]
    megapixels = len(jobs) * TILE * TILE / 1e6

    def decode_all() -> None:
        for data in raw:
            imaging.decode(data)

    handle = openslide.OpenSlide(str(path))

    def openslide_all() -> None:
        for job in jobs:
            handle.read_region((job.ox, job.oy), 0, (TILE, TILE))

    limit = median_rate([timed_loop(megapixels, decode_all) for _ in range(REPEATS)])
    openslide_rate = median_rate([timed_loop(megapixels, openslide_all) for _ in range(2)])
    return len(jobs), limit, openslide_rate


@dataclass(frozen=True)
class EngineRun:
    rate: Rate
    """Megapixels over wall time and over the workers' CPU seconds (all their threads)."""
    worker_cpu: dict[str, float]
    """CPU seconds of each worker process for the run."""
    task_cpu: float
    """CPU seconds of the tasks' own threads (reading and the model)."""
    caller_cpu: float
    """CPU seconds of this process (planning, submitting, collecting) during the run."""
    tiles: int


def engine_runs(client: Client, path: Path, region: tuple[int, int, int, int]) -> list[EngineRun]:
    model = ReadOnlyModel(input=InputSpec(tile_size=TILE, level=0))
    # Warm the workers (imports, slide open) and this process (planning mask, slide hash).
    analysis.run(model, str(path), region=region, client=client, progress=False)
    runs = []
    for _ in range(REPEATS):
        before, caller = client.run(process_cpu), time.process_time()
        started = time.perf_counter()
        result = analysis.run(model, str(path), region=region, client=client, progress=False)
        elapsed = time.perf_counter() - started
        caller = time.process_time() - caller
        after = client.run(process_cpu)
        worker_cpu = {w: after[w] - before[w] for w in after}
        megapixels = result.summary["pixels"] / 1e6
        runs.append(
            EngineRun(
                Rate(megapixels, elapsed, sum(worker_cpu.values())),
                worker_cpu,
                result.provenance["tile_cpu_seconds"],
                caller,
                result.provenance["tiles"]["done"],
            )
        )
    return runs


def median_run(runs: list[EngineRun]) -> EngineRun:
    by_cpu = sorted(runs, key=lambda r: r.rate.cpu)
    middle = by_cpu[len(by_cpu) // 2]
    return EngineRun(
        median_rate([r.rate for r in runs]),
        middle.worker_cpu,
        statistics.median(r.task_cpu for r in runs),
        statistics.median(r.caller_cpu for r in runs),
        middle.tiles,
    )


def locality_figure(slide: Path) -> float:
    import signal
    import subprocess

    from slidestore.testing.ports import free_port
    from slidestore_server.testing_cluster import Cluster

    with tempfile.TemporaryDirectory() as root, Cluster(Path(root), nodes=3) as storage:
        with storage.client() as sdk:
            blob_id = sdk.upload(slide, wait="all", replicas=2, progress=False)
        address = f"tcp://127.0.0.1:{free_port()}"
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    address.rsplit(":", 1)[1],
                    "--dashboard-address",
                    ":0",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        ]
        try:
            for node in storage.nodes:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "slidestore_server.cli",
                            "dask-worker",
                            "--scheduler",
                            address,
                            "--node-data-dir",
                            str(node.data_dir),
                            "--nworkers",
                            "1",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            with Client(address, timeout=60, set_as_default=False) as client:
                client.wait_for_workers(3, timeout=120)
                with storage.client() as sdk:
                    remote = sdk.open(blob_id)
                    result = analysis.run(ReadOnlyModel(), remote, client=client, progress=False)
            local, remote_bytes = (
                result.provenance["bytes"]["local"],
                result.provenance["bytes"]["remote"],
            )
            return local / max(local + remote_bytes, 1)
        finally:
            for process in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def nuclei_figures(
    client: Client, path: Path, region: tuple[int, int, int, int] | None
) -> tuple[int, float, float, dict[str, float]]:
    """(tiles, tiles/s, peak RSS MB of the largest worker, CPU-s per worker)."""
    model = analysis.get_model("nuclei")
    before = client.run(process_cpu)
    started = time.perf_counter()
    result = analysis.run(model, str(path), region=region, client=client, progress=False)
    elapsed = time.perf_counter() - started
    after = client.run(process_cpu)
    rss = client.run(peak_rss_mb)
    tiles = result.provenance["tiles"]["done"]
    return tiles, tiles / elapsed, max(rss.values()), {w: after[w] - before[w] for w in after}


def cpu_list(worker_cpu: dict[str, float]) -> str:
    return " + ".join(f"{v:.2f}" for _, v in sorted(worker_cpu.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a band for nuclei, no locality")
    parser.add_argument("--no-nuclei", action="store_true", help="leave the nuclei run out")
    args = parser.parse_args()
    path = cached_svs(*BIG)
    region = band_region(BIG[1], BAND_ROWS, TILE)
    print(f"analysis bench on {path.name} ({os.cpu_count()} cores), {load()}", flush=True)
    started = time.perf_counter()

    tiles, limit, openslide_rate = decode_figures(path, region)
    load_decode = load()
    local1, client1 = cluster(1)
    with local1, client1:
        one = median_run(engine_runs(client1, path, region))
    load_one = load()
    local2, client2 = cluster(2)
    with local2, client2:
        two = median_run(engine_runs(client2, path, region))
    load_two = load()
    assert one.tiles == two.tiles == tiles, (one.tiles, two.tiles, tiles)
    megapixels = one.rate.megapixels

    report("band", f"{tiles} tissue tiles x {TILE} px = {megapixels:.1f} MP")
    report("decoder limit: raw tiles in a tight loop", str(limit))
    report("openslide.read_region loop", str(openslide_rate))
    report("  measured at", load_decode)
    report("engine, 1 worker, per worker CPU-s (all threads)", str(one.rate))
    report(
        "engine / limit, per CPU-s of the worker process",
        f"{one.rate.per_cpu / limit.per_cpu:.0%}",
        "(goal >= 70%)",
    )
    report(
        "engine / limit, per CPU-s of the tasks' threads",
        f"{megapixels / one.task_cpu / limit.per_cpu:.0%}",
    )
    with_caller = megapixels / (one.rate.cpu + one.caller_cpu)
    report("engine / limit, per CPU-s of worker + caller", f"{with_caller / limit.per_cpu:.0%}")
    report(
        "engine / openslide loop, per CPU-s", f"{one.rate.per_cpu / openslide_rate.per_cpu:.2f}x"
    )
    report("engine / limit, wall", f"{one.rate.per_wall / limit.per_wall:.0%}")
    report("  measured at", load_one)
    report(
        "1 worker: CPU-s per worker, caller",
        f"{cpu_list(one.worker_cpu)} s, caller {one.caller_cpu:.2f} s",
    )
    report(
        "2 workers: CPU-s per worker, caller",
        f"{cpu_list(two.worker_cpu)} s, caller {two.caller_cpu:.2f} s",
    )
    report("2 workers: total worker CPU-s vs 1 worker", f"{two.rate.cpu / one.rate.cpu:.2f}x")
    report(
        "2 vs 1: work per worker CPU-s (scaling efficiency)",
        f"{two.rate.per_cpu / one.rate.per_cpu:.0%}",
        "(load-independent; 1.7x wall needs >= 85%)",
    )
    report(
        "2 vs 1: wall-clock speed-up",
        f"{two.rate.per_wall / one.rate.per_wall:.2f}x",
        f"(goal >= 1.7x idle; 1 worker at {load_one}, 2 at {load_two})",
    )

    if not args.no_nuclei:
        local3, client3 = cluster(2)  # fresh workers: their peak RSS is this run's
        with local3, client3:
            nuclei_region = band_region(BIG[1], NUCLEI_QUICK_ROWS, 512) if args.quick else None
            what = f"a band of {NUCLEI_QUICK_ROWS} tile rows" if args.quick else "the whole slide"
            n_tiles, per_s, rss, n_cpu = nuclei_figures(client3, path, nuclei_region)
            report(f"nuclei, {what}, 2 workers", f"{n_tiles} tiles, {per_s:.2f} tiles/s")
            report(
                "nuclei: per tile, worker CPU",
                f"{sum(n_cpu.values()) / max(n_tiles, 1) * 1000:.0f} ms ({cpu_list(n_cpu)} s)",
            )
            report("nuclei: peak RSS per worker", f"{rss:.0f} MB", "(goal < 1024 MB)")
            report("  measured at", load())

    if not args.quick:
        share = locality_figure(cached_svs(8000, 6000, seed=5))
        report(
            "locality, 3 nodes, a worker per node",
            f"{share:.1%} of tile bytes local",
            "(goal >= 95%)",
        )

    print(f"\nanalysis bench ({time.perf_counter() - started:.0f} s, now {load()})")
    width = max(len(label) for label, _, _ in rows)
    for label, value, goal in rows:
        print(f"  {label:<{width}}  {value}  {goal}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
