"""Cluster repair figures on this machine, in one run (``nox -s cluster_bench``).

A coordinator and four nodes on loopback with the **default** timeouts (heartbeat 1 s,
suspect 3 s, dead 10 s, loop 0.5 s), ``--blobs`` distinct ~450 MB slides (the cached
60000x50000 generated slide, each copy with a different tail appended so each is its own
blob) stored three times on nodes 0-2 (hard links made before the nodes start: the nodes
report them in their registration and the coordinator adopts them; no upload time). Then:

1. ``kill -9`` node0, and measured from that instant (no other load on the machine):
   - **dead**: the first ``GET /v1/nodes`` listing node0 ``dead`` (polled every 50 ms);
     goal <= dead_after + 1 heartbeat = 11 s;
   - **first repair byte**: the first non-empty temp file in node3's
     ``data/blobs/.tmp`` (where ``POST /replicas`` streams a copy before it verifies and
     links it into place; polled every 10 ms); goal <= 1 s after dead;
   - **R restored**: every blob has three alive copies again (coordinator's blob views)
     and node3's copies hash right on disk;
2. node0 returns with an empty disk (a new node), idle DeepZoom tile latency on node2 (wrk,
   seeded viewer-like tile mix), then ``kill -9`` node1 and, once the copies to node0
   have started, tile latency on node2 (a copy source) during that second repair; goal
   p99 <= 2x idle. node2's tiles are prerendered, as a production node's are. The load is
   paced at half of what node2 serves flat out (measured just before): viewers do not
   saturate a node, and on a saturated CPU any other work, a repair included, shows up
   whole in the queueing delay. The flat-out figures are printed too. The four nodes
   share two cores and one disk here; in a real cluster the receiving node and the other
   source are other machines. So for this episode the receiving node0 keeps its data on
   tmpfs (its own "disk": its 250 MB/s of writes and fsyncs otherwise queue node2's tile
   reads behind them), and the coordinator and the other nodes run in ``SCHED_IDLE``
   inside a cpu cgroup marked ``cpu.idle``, taking only the CPU node2 and wrk leave (the
   cgroup matters: with the kernel's session autogrouping each node is a task group of its
   own, and per-thread ``SCHED_IDLE`` alone left the stand-ins a full group's share). What
   node2 itself does for the repair, reading and sending its share of the blobs, stays on
   node2's disk at node2's priority.
   ``--one-machine`` drops both stand-ins, to see how a one-box cluster fares. Two
   repairs, because a tile load and a timed repair would each distort the other's figure;
3. the same bytes copied once more with an fsync (read, write, fsync file and directory,
   one file after the other) on the same disk: repair throughput goal >= 60 % of it;
4. placement decision p99 on SQLite and PostgreSQL (``benchmarks/test_placement_latency.py``
   run in a subprocess; goal 10 ms).

Run: ``.venv/bin/python benchmarks/cluster/run_cluster_bench.py [--blobs 6] [--keep]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import slidestore
from slidestore.blobs import fanout
from slidestore.cluster.model import NodeState
from slidestore.protocols.deepzoom import DeepZoom
from slidestore.protocols.deepzoom.prerender import is_complete, prerender
from slidestore.testing import cached_svs
from slidestore.tokens import Operation
from slidestore_server.testing_cluster import Cluster, eventually, sha256_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "load"))
from run_load import (  # noqa: E402
    WrkResult,
    ensure_wrk,
    fsync_copy,
    run_wrk,
    tile_paths,
    write_lua,
)

DEFAULTS = {
    "heartbeat_interval": 1.0,
    "suspect_after": 3.0,
    "dead_after": 10.0,
    "loop_interval": 0.5,
    "lease_seconds": 3.0,
}
R = 3
PACED_CONNECTIONS = 32
SHM = Path("/dev/shm")


def make_blobs(count: int, work: Path) -> list[tuple[str, Path]]:
    base = cached_svs(60000, 50000)
    work.mkdir(parents=True, exist_ok=True)
    blobs: list[tuple[str, Path]] = []
    for n in range(count):
        path = work / f"slide-{n}.svs"
        shutil.copyfile(base, path)
        with open(path, "ab") as file:
            file.write(f"\n#cluster bench copy {n}\n".encode())
        blobs.append((sha256_file(path), path))
    return blobs


def seed_nodes(cluster: Cluster, blobs: list[tuple[str, Path]], nodes: list[int]) -> None:
    for blob_id, path in blobs:
        for node in nodes:
            target = cluster.nodes[node].data_dir / "blobs" / fanout(blob_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
            os.chmod(target, 0o444)


def cached_rendition(slide: Path) -> Path:
    """The slide's Deep Zoom rendition, prerendered once and kept in ``.cache`` (every bench
    blob is this slide with a different tail, so they all share it)."""
    deepzoom = DeepZoom(slidestore.open_slide(slide))
    directory = ROOT / ".cache" / "cluster-bench-renditions" / deepzoom.rendition_key
    if not is_complete(directory):
        print("prerendering the bench slide's Deep Zoom tiles once (cached) …", flush=True)
        prerender(deepzoom, directory, threads=2)
    return directory


def seed_renditions(cluster: Cluster, blobs: list[tuple[str, Path]], node: int) -> None:
    """Give ``node`` a complete rendition of every blob, as its prerenderer would have."""
    rendition = cached_rendition(blobs[0][1])
    for blob_id, _ in blobs:
        target = cluster.nodes[node].data_dir / "renditions" / blob_id / rendition.name
        target.mkdir(parents=True, exist_ok=True)
        for part in rendition.iterdir():
            os.link(part, target / part.name)


CPU_CGROUP = Path("/sys/fs/cgroup/cpu")


def idle_group(pgid: int) -> None:
    """Put every thread of every process in process group ``pgid`` in ``SCHED_IDLE``: it
    runs only on CPU time nothing else wants (threads started later inherit it)."""
    for pid in group_pids(pgid):
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setscheduler(int(task.name), os.SCHED_IDLE, os.sched_param(0))
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue


def group_pids(pgid: int) -> list[int]:
    """Processes in process group ``pgid`` (a node and any workers it started)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(int(proc.name)) == pgid:
                    pids.append(int(proc.name))
    return pids


def idle_cgroup() -> Path | None:
    """A cpu cgroup whose tasks are idle *as a group* (``cpu.idle``), or None if the
    controller is not writable here.

    Per-thread ``SCHED_IDLE`` alone is not enough: each node runs in its own session, so
    with ``kernel.sched_autogroup_enabled`` each is its own task group, and CFS shares the
    CPU between groups first: a group of idle threads still got the same share as node2's
    group and its threads were not preempted at once when node2's woke. Measured: node2's
    p50 tile latency doubled during the repair even with node2 sending next to nothing.
    """
    group = CPU_CGROUP / f"slidestore-bench-elsewhere-{os.getpid()}"
    try:
        group.mkdir()
        (group / "cpu.idle").write_text("1")
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        return None
    return group


def other_machines(cluster: Cluster, nodes: list[int], group: Path | None) -> None:
    """The coordinator and ``nodes`` stand in for other machines: they get only the CPU
    time that node2 and the load generator leave."""
    for process in [cluster.coordinator, *(cluster.nodes[i] for i in nodes)]:
        if process.proc is None:
            continue
        idle_group(process.proc.pid)
        if group is not None:
            for pid in group_pids(process.proc.pid):
                with contextlib.suppress(OSError):
                    (group / "cgroup.procs").write_text(str(pid))
        else:  # at least the whole autogroup at the lowest weight
            with contextlib.suppress(OSError):
                Path(f"/proc/{process.proc.pid}/autogroup").write_text("19")


def remove_cgroup(group: Path) -> None:
    """Move what is left back to the root group and remove ``group``."""
    with contextlib.suppress(OSError):
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (CPU_CGROUP / "cgroup.procs").write_text(pid)
        group.rmdir()


def wrk_tiles(
    cluster: Cluster,
    node: int,
    blob_id: str,
    slide: Path,
    seed: int,
    seconds: float,
    *,
    connections: int = 8,
    delay_ms: int | None = None,
):
    wrk = ensure_wrk()
    token = cluster.token(Operation.READ)
    levels = DeepZoom(slidestore.open_slide(slide)).level_tiles
    paths = tile_paths(
        levels,
        f"/slides/{blob_id}_files/{{level}}/{{col}}_{{row}}.jpeg?token={token}",
        count=20000,
        seed=seed,
    )
    script = write_lua(paths, cluster.root / f"tiles-{seed}.lua", seed, delay_ms=delay_ms)
    return run_wrk(
        wrk,
        cluster.nodes[node].url,
        script,
        threads=2,
        connections=connections,
        duration=seconds,
    )


def report(when: str, paced: WrkResult, flat_out: WrkResult, *, verbose: bool) -> None:
    if verbose:
        print(paced.raw, flat_out.raw, flush=True)
    print(
        f"tiles on node2, {when}: paced ({PACED_CONNECTIONS} connections) "
        f"{paced.requests_per_s:.0f} req/s, p50 {paced.p50_ms:.2f} ms, p99 {paced.p99_ms:.2f} "
        f"ms; flat out {flat_out.requests_per_s:.0f} req/s, p50 {flat_out.p50_ms:.2f} ms, "
        f"p99 {flat_out.p99_ms:.2f} ms",
        flush=True,
    )


def placement_p99() -> dict[str, float]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "benchmarks" / "test_placement_latency.py"),
            "-s",
            "-q",
            "-p",
            "no:randomly",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    found = {}
    for line in done.stdout.splitlines():
        match = re.search(
            r"placement on (\w+).*decision \(Server-Timing\) p50 \S+ ms, p99 (\S+)", line
        )
        if match:
            found[match[1]] = float(match[2]) / 1000
            print("   ", line.strip())
    if not found:
        print(done.stdout[-3000:], done.stderr[-2000:])
    return found


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blobs", type=int, default=6, help="~450 MB slides to repair")
    parser.add_argument("--tile-seconds", type=float, default=5.0)
    parser.add_argument(
        "--load", type=float, default=0.5, help="paced tile load, share of the flat-out rate"
    )
    parser.add_argument("--no-placement", action="store_true")
    parser.add_argument(
        "--one-machine",
        action="store_true",
        help="tile episode: the other nodes share node2's disk and CPU priority",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own reports")
    args = parser.parse_args()

    (ROOT / ".cache").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cluster-bench-", dir=ROOT / ".cache"))
    results: list[tuple[str, str, bool]] = []
    cleanup: list[Path] = []
    groups: list[Path] = []
    try:
        print(f"preparing {args.blobs} blobs in {work} …", flush=True)
        blobs = make_blobs(args.blobs, work / "slides")
        total = sum(path.stat().st_size for _, path in blobs)
        print(f"{args.blobs} blobs, {total / 1e9:.2f} GB, R={R}, 4 nodes", flush=True)

        # node2 serves the tiles: prerendered, as every node in production (the others
        # do not prerender: here they share node2's two cores, a real cluster would not).
        cluster = Cluster(
            work / "cluster",
            nodes=4,
            coordinator_settings=DEFAULTS,
            per_node={2: {"prerender": "true"}},
        )
        seed_nodes(cluster, blobs, [0, 1, 2])
        seed_renditions(cluster, blobs, 2)
        with cluster:
            for blob_id, _ in blobs:
                cluster.wait_durable(blob_id, R, timeout=120, disk=False)
            # The nodes registered one after another; the leader copies nothing until its
            # startup grace is over. Copies made before the kill would confound the figures.
            eventually(lambda: cluster.status()["repair_held_seconds"] == 0, timeout=60)
            early = cluster.copies_made()
            if early:
                print(f"WARNING: {early:.0f} copies made before the kill", flush=True)
            tile_blob, tile_slide = blobs[0]

            victim_id = cluster.node_id(0)
            tmp = cluster.nodes[3].data_dir / "blobs" / ".tmp"
            marks: dict[str, float] = {}
            stop = threading.Event()

            def watch_dead() -> None:
                while not stop.is_set() and "dead" not in marks:
                    try:
                        if cluster.states().get(victim_id) is NodeState.DEAD:
                            marks["dead"] = time.monotonic()
                    except Exception:
                        pass
                    time.sleep(0.05)

            def watch_bytes() -> None:
                while not stop.is_set() and "byte" not in marks:
                    for entry in os.scandir(tmp):
                        try:
                            if entry.stat().st_size > 0:
                                marks["byte"] = time.monotonic()
                        except FileNotFoundError:
                            pass
                    if _has_blob(cluster, blobs):
                        marks.setdefault("byte", time.monotonic())  # a copy done in <10 ms
                    time.sleep(0.01)

            watchers = [threading.Thread(target=f, daemon=True) for f in (watch_dead, watch_bytes)]
            for thread in watchers:
                thread.start()
            killed = time.monotonic()
            cluster.kill(0)
            eventually(lambda: "byte" in marks, timeout=60, interval=0.01)
            for blob_id, _ in blobs:
                cluster.wait_durable(blob_id, R, timeout=900, disk=False)
            restored = time.monotonic()
            stop.set()
            for thread in watchers:
                thread.join()
            for blob_id, _ in blobs:
                assert cluster.disk_hashes(blob_id).get(3) == blob_id, "node3's copy is wrong"
            copied = total  # every blob had a copy on node0, so each is copied to node3 once

            # Second repair, for tile latency: a tile load saturates the CPU, so it gets a
            # repair of its own instead of slowing (and confounding) the one timed above.
            # node0 comes back empty (a replaced disk: a new node); node1 dies; node2, a
            # copy source, serves the tiles.
            shutil.rmtree(cluster.nodes[0].data_dir)
            # The first repair left ~3 GB dirty in the page cache; without this the kernel
            # flushes it (a writeback worker at half a core) through both tile windows.
            os.sync()
            if not args.one_machine:
                # node0 stands in for another machine: its disk too (tmpfs, in RAM).
                elsewhere = Path(tempfile.mkdtemp(prefix="cluster-bench-node0-", dir=SHM))
                cleanup.append(elsewhere)
                cluster.nodes[0].data_dir.symlink_to(elsewhere, target_is_directory=True)
            cluster.restart(0)
            cluster.wait_alive([0, 2, 3], timeout=60)
            if not args.one_machine:
                group = idle_cgroup()
                if group is not None:
                    groups.append(group)
                print(
                    "other machines: "
                    + (f"cgroup {group.name} (cpu.idle)" if group else "autogroup nice 19")
                    + " + SCHED_IDLE",
                    flush=True,
                )
                other_machines(cluster, [0, 1, 3], group)
            wrk_tiles(cluster, 2, tile_blob, tile_slide, seed=4, seconds=2)  # warm-up
            flat_out = wrk_tiles(cluster, 2, tile_blob, tile_slide, seed=5, seconds=4)
            # Viewers do not saturate a node: the figure is taken at half of what node2
            # serves flat out (each wrk connection pauses between requests).
            rate = flat_out.requests_per_s * args.load
            delay_ms = max(1, round(1000 * PACED_CONNECTIONS / rate - flat_out.p50_ms))
            paced = {"connections": PACED_CONNECTIONS, "delay_ms": delay_ms}
            idle = wrk_tiles(
                cluster, 2, tile_blob, tile_slide, seed=6, seconds=args.tile_seconds, **paced
            )
            report(f"idle ({delay_ms} ms pauses)", idle, flat_out, verbose=args.verbose)
            target_tmp = cluster.nodes[0].data_dir / "blobs" / ".tmp"

            def copying() -> bool:
                entries = list(os.scandir(target_tmp)) if target_tmp.is_dir() else []
                return any(e.stat().st_size > 0 for e in entries) or any(
                    cluster.replica_path(0, blob_id).exists() for blob_id, _ in blobs
                )

            cluster.kill(1)
            eventually(copying, timeout=60, interval=0.01)
            during = wrk_tiles(
                cluster, 2, tile_blob, tile_slide, seed=3, seconds=args.tile_seconds, **paced
            )
            flat_during = wrk_tiles(cluster, 2, tile_blob, tile_slide, seed=7, seconds=3)
            wrk_end = time.monotonic()
            report("during repair", during, flat_during, verbose=args.verbose)
            for blob_id, _ in blobs:
                cluster.wait_durable(blob_id, R, timeout=900, disk=False)
            second_restored = time.monotonic()

        dead_s = marks["dead"] - killed
        byte_after_dead = marks["byte"] - marks["dead"]
        repair_s = restored - marks["byte"]
        repair_rate = copied / repair_s
        print(
            f"tiles during the second repair: wrk window ended "
            f"{'before' if wrk_end < second_restored else 'AFTER'} R was restored "
            f"({second_restored - wrk_end:.1f} s later)"
        )

        baseline_s = 0.0
        for _, path in blobs:
            baseline_s += fsync_copy(path, work / "fsync-copy.tmp")
            os.unlink(work / "fsync-copy.tmp")
        baseline_rate = total / baseline_s

        goal_dead = DEFAULTS["dead_after"] + DEFAULTS["heartbeat_interval"]
        results.append(
            (
                "kill -9 -> dead",
                f"{dead_s:.2f} s (goal <= {goal_dead:.0f} s)",
                dead_s <= goal_dead,
            )
        )
        results.append(
            (
                "dead -> first repair byte",
                f"{byte_after_dead:.2f} s (goal <= 1 s; kill -> byte {marks['byte'] - killed:.2f} s"
                f"{f'; {early:.0f} copies before the kill: figures invalid' if early else ''})",
                0 <= byte_after_dead <= 1.0 and not early,
            )
        )
        results.append(
            (
                "restore R vs fsync'd copy",
                f"repair {copied / 1e9:.2f} GB in {repair_s:.1f} s = {repair_rate / 1e6:.0f} MB/s; "
                f"fsync'd copy {baseline_rate / 1e6:.0f} MB/s; ratio {repair_rate / baseline_rate:.0%} "
                "(goal >= 60%)",
                repair_rate >= 0.6 * baseline_rate,
            )
        )
        ratio = during.p99_ms / idle.p99_ms
        results.append(
            (
                "tile p99 during repair vs idle",
                f"{during.p99_ms:.2f} ms vs {idle.p99_ms:.2f} ms = {ratio:.2f}x (goal <= 2x; "
                f"{during.requests_per_s:.0f} vs {idle.requests_per_s:.0f} req/s, "
                f"non-2xx {during.non_2xx + idle.non_2xx})",
                ratio <= 2.0,
            )
        )
        if not args.no_placement:
            print("placement latency (benchmarks/test_placement_latency.py) …", flush=True)
            for backend, p99 in placement_p99().items():
                results.append(
                    (
                        f"placement p99 on {backend}",
                        f"{p99 * 1000:.2f} ms (goal <= 10 ms)",
                        p99 <= 0.010,
                    )
                )
    finally:
        for group in groups:
            remove_cgroup(group)
        for directory in cleanup:
            shutil.rmtree(directory, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print("\nCLUSTER BENCHMARK")
    for name, figure, ok in results:
        print(f"{verdict(ok)}  {name:<32} {figure}")
    return 0 if all(ok for *_, ok in results) else 1


def _has_blob(cluster: Cluster, blobs: list[tuple[str, Path]]) -> bool:
    return any(cluster.replica_path(3, blob_id).exists() for blob_id, _ in blobs)


if __name__ == "__main__":
    sys.exit(main())
