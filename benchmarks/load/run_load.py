"""Load test: the node against the DeepZoom baseline and the HTTP ceiling, plus upload speed.

Run from the repository root (``nox -s load`` does)::

    python benchmarks/load/run_load.py [--duration 15] [--connections 16]

In one run it:

1. starts the node (2 workers), the baseline app (openslide ``DeepZoomGenerator`` in
   Starlette, 2 uvicorn workers) and the ceiling app (fixed 12 KB body, 2 workers), all on
   the same large slide (``cached_svs(60000, 50000)``);
2. writes for each server a wrk Lua script holding a seeded list of random tile paths with
   a viewer-like mix (60% deepest level, 25% the next, 10% the next, 5% spread uniformly
   over the coarser levels) from that server's own DeepZoom grid (node: tile 240 /
   overlap 0; baseline: tile 254 / overlap 1); each request picks a random path;
3. warms each server identically: one ``--warmup``-second wrk run (default 3 s) with the
   same script and settings, whose numbers are discarded;
4. runs ``wrk -t2 -cN -dDs --latency`` against each in turn (the others idle) and prints
   tiles/s, p50, p99, non-2xx counts and the node's ratios with PASS/FAIL;
5. uploads a ~2 GB slide to a fresh node (2 workers) over tus (POST, then streaming PATCH
   in 64 MiB chunks) and compares the MB/s with a plain read+write+fsync copy of the same
   file into the same filesystem, and reports the node's peak RSS (max VmHWM over its
   process group).

Everything (servers, wrk, this script) shares the machine's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

import slidestore
from slidestore import tokens
from slidestore.blobs import BlobStore
from slidestore.protocols.deepzoom import DeepZoom
from slidestore.testing import cached_svs
from slidestore.tokens import Operation, mint
from slidestore_server.testing import NodeProcess, free_port, wait_http

REPO = Path(__file__).resolve().parents[2]
SECRET = tokens.new_secret()
TILE_SLIDE = (60000, 50000)
UPLOAD_SLIDE = (130000, 110000)
MIX = (0.60, 0.25, 0.10)  # deepest, next, next; the rest (5%) goes to coarser levels
PATHS_PER_SERVER = 20000
SEED = 20261123
UPLOAD_CHUNK = 64 << 20
READ_BLOCK = 1 << 20

GOAL_VS_BASELINE = 20.0
GOAL_VS_CEILING = 0.50
GOAL_P99_MS = 25.0
GOAL_UPLOAD_VS_COPY = 0.60


# -- processes --------------------------------------------------------------------------


class UvicornProcess:
    """One of the reference apps under ``uvicorn --factory --workers N`` (own process group)."""

    def __init__(self, factory: str, slide: Path, *, workers: int, log: Path) -> None:
        self.factory = factory
        self.slide = slide
        self.workers = workers
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UvicornProcess:
        env = dict(os.environ)
        env["SLIDESTORE_BENCH_SLIDE"] = str(self.slide)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            f"benchmarks.load.baseline_apps:{self.factory}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        probe = "/slide.dzi" if self.factory == "deepzoom_app" else "/healthz"
        wait_http(self.url + probe, timeout=60, proc=self.proc)
        return self

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self.proc = None


def group_pids(pgid: int) -> list[int]:
    """Every live process whose process group is ``pgid``."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- wrk --------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit(
            "wrk is not installed and this is not root, so it cannot be apt-get installed: "
            "install it (sudo apt-get install -y wrk) and run again"
        )
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("apt-get install wrk succeeded but wrk is still not on PATH")
    return found


def tile_paths(
    level_tiles: Sequence[tuple[int, int]], template: str, *, count: int, seed: int
) -> list[str]:
    """``count`` random tile paths with the viewer-like level mix; ``template`` takes
    ``level``, ``col`` and ``row``."""
    rng = random.Random(seed)
    deepest = len(level_tiles) - 1
    coarser = list(range(deepest - 2))
    paths: list[str] = []
    for _ in range(count):
        draw = rng.random()
        if draw < MIX[0]:
            level = deepest
        elif draw < MIX[0] + MIX[1]:
            level = deepest - 1
        elif draw < MIX[0] + MIX[1] + MIX[2]:
            level = deepest - 2
        else:
            level = rng.choice(coarser)
        cols, rows = level_tiles[level]
        paths.append(template.format(level=level, col=rng.randrange(cols), row=rng.randrange(rows)))
    return paths


def write_lua(
    paths: Sequence[str], target: Path, seed: int, *, delay_ms: int | None = None
) -> Path:
    """A wrk script requesting ``paths`` at random; ``delay_ms`` paces each connection (a
    pause before every request) so the load is a chosen rate rather than all it can get."""
    body = ",\n".join(f'"{p}"' for p in paths)
    pacing = f"\nfunction delay()\n  return {delay_ms}\nend\n" if delay_ms else ""
    target.write_text(
        f"""local paths = {{
{body}
}}
local n = #paths
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  math.randomseed({seed} + 7919 * tonumber(tid or 0))
end

function request()
  return wrk.format("GET", paths[math.random(n)])
end
"""
        + pacing
    )
    return target


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: str
    raw: str


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"([0-9]+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"could not parse wrk output:\n{output}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", output)
    errors = re.search(r"Socket errors:(.*)", output)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=errors.group(1).strip() if errors else "none",
        raw=output,
    )


def run_wrk(
    wrk: str, url: str, script: Path, *, threads: int, connections: int, duration: float
) -> WrkResult:
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


# -- upload -----------------------------------------------------------------------------


def _file_slices(path: Path, offset: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left > 0:
            block = f.read(min(READ_BLOCK, left))
            if not block:
                raise RuntimeError(f"{path} ended early")
            left -= len(block)
            yield block


def tus_upload(base_url: str, path: Path, token: str) -> tuple[float, str]:
    """Upload ``path`` over tus; returns (seconds from POST to the completing PATCH's
    answer, blob id)."""
    size = path.stat().st_size
    headers = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=600) as client:
        started = time.perf_counter()
        created = client.post("/uploads", headers={"Upload-Length": str(size)})
        if created.status_code != 201:
            raise RuntimeError(f"POST /uploads: {created.status_code} {created.text}")
        location = created.headers["Location"]
        offset = 0
        response: httpx.Response | None = None
        while offset < size:
            length = min(UPLOAD_CHUNK, size - offset)
            response = client.patch(
                location,
                headers={
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(length),
                },
                content=_file_slices(path, offset, length),
            )
            if response.status_code != 204:
                raise RuntimeError(f"PATCH at {offset}: {response.status_code} {response.text}")
            offset = int(response.headers["Upload-Offset"])
        elapsed = time.perf_counter() - started
    assert response is not None
    return elapsed, response.headers.get("Slidestore-Blob-Id", "?")


def fsync_copy(source: Path, target: Path) -> float:
    started = time.perf_counter()
    with open(source, "rb") as src, open(target, "wb") as dst:
        while block := src.read(UPLOAD_CHUNK):
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return time.perf_counter() - started


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(UPLOAD_CHUNK):
            pass


# -- main -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def wait_prerendered(url: str, blob_id: str, token: str, slide_bytes: int) -> None:
    """Wait until the node has prerendered the slide (what it does after every upload)."""
    started = time.monotonic()
    with httpx.Client(base_url=url, params={"token": token}, timeout=30) as client:
        while True:
            state = client.get(f"/slides/{blob_id}/renditions").json()["deepzoom"]
            if state["state"] == "complete":
                break
            if state["state"] not in ("pending", "rendering") or time.monotonic() - started > 1800:
                raise RuntimeError(f"prerendering did not complete: {state}")
            time.sleep(0.5)
    print(
        f"node prerendered {state['tiles']} Deep Zoom tiles in {state['seconds']:.0f} s "
        f"(2 threads; {state['bytes'] / 1e6:.0f} MB on disk, "
        f"{state['bytes'] / slide_bytes:.0%} of the slide); waited "
        f"{time.monotonic() - started:.0f} s"
    )


def tile_benchmark(args: argparse.Namespace, work: Path, wrk: str) -> bool:
    slide_path = cached_svs(*TILE_SLIDE)
    node_dir = work / "node-tiles"
    blob_id = BlobStore(node_dir / "blobs", reserve_bytes=0).put_file(slide_path)
    read_token = mint(SECRET, ops={Operation.READ}, ttl=24 * 3600)

    node_tiles = DeepZoom(slidestore.open_slide(slide_path)).level_tiles
    from openslide import OpenSlide
    from openslide.deepzoom import DeepZoomGenerator

    with OpenSlide(str(slide_path)) as osr:
        base_tiles = DeepZoomGenerator(
            osr, tile_size=254, overlap=1, limit_bounds=False
        ).level_tiles

    node_paths = tile_paths(
        node_tiles,
        f"/slides/{blob_id}_files/{{level}}/{{col}}_{{row}}.jpeg?token={read_token}",
        count=PATHS_PER_SERVER,
        seed=SEED,
    )
    base_paths = tile_paths(
        base_tiles, "/slide_files/{level}/{col}_{row}.jpeg", count=PATHS_PER_SERVER, seed=SEED
    )
    scripts = {
        "node": write_lua(node_paths, work / "node.lua", SEED),
        "baseline": write_lua(base_paths, work / "baseline.lua", SEED),
        "ceiling": write_lua(base_paths, work / "ceiling.lua", SEED),
    }
    print(
        f"slide {slide_path.name} ({slide_path.stat().st_size / 1e6:.0f} MB); "
        f"{PATHS_PER_SERVER} paths per server, mix 60/25/10/5 (deepest/next/next/coarser), "
        f"seed {SEED}"
    )
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency; "
        f"identical {args.warmup:g}s warm-up run per server (discarded)\n"
    )

    node = NodeProcess(
        node_dir,
        settings={"workers": 2, "secret": SECRET, "reserve_bytes": 0, "prerender_threads": 2},
        log=work / "node-tiles.log",
    )
    baseline = UvicornProcess("deepzoom_app", slide_path, workers=2, log=work / "baseline.log")
    ceiling = UvicornProcess("ceiling_app", slide_path, workers=2, log=work / "ceiling.log")
    results: dict[str, WrkResult] = {}
    try:
        node.start(timeout=60)
        wait_prerendered(node.url, blob_id, read_token, slide_path.stat().st_size)
        baseline.start()
        ceiling.start()
        for name, url in (("node", node.url), ("baseline", baseline.url), ("ceiling", ceiling.url)):
            kwargs = {"threads": args.threads, "connections": args.connections}
            if args.warmup > 0:
                run_wrk(wrk, url, scripts[name], duration=args.warmup, **kwargs)
            results[name] = run_wrk(wrk, url, scripts[name], duration=args.duration, **kwargs)
            r = results[name]
            print(
                f"  {name}: {r.requests} requests, non-2xx {r.non_2xx}, socket errors: {r.socket_errors}"
            )
    finally:
        node.kill()
        baseline.kill()
        ceiling.kill()

    print()
    print(f"{'server':<10} {'tiles/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'non-2xx':>8}")
    for name, r in results.items():
        print(
            f"{name:<10} {r.requests_per_s:>10.1f} {r.p50_ms:>9.2f} {r.p99_ms:>9.2f} {r.non_2xx:>8}"
        )
    n, b, c = results["node"], results["baseline"], results["ceiling"]
    vs_base = n.requests_per_s / b.requests_per_s
    vs_ceiling = n.requests_per_s / c.requests_per_s
    no_errors = all(r.non_2xx == 0 for r in results.values())
    checks = [
        (
            f"node / baseline    {vs_base:8.1f}x  (goal >= {GOAL_VS_BASELINE:g}x)",
            vs_base >= GOAL_VS_BASELINE,
        ),
        (
            f"node / ceiling     {vs_ceiling:8.1%}   (goal >= {GOAL_VS_CEILING:.0%})",
            vs_ceiling >= GOAL_VS_CEILING,
        ),
        (
            f"node p99           {n.p99_ms:8.2f} ms (goal < {GOAL_P99_MS:g} ms)",
            n.p99_ms < GOAL_P99_MS,
        ),
        ("non-2xx responses  all zero" if no_errors else "non-2xx responses  NOT zero", no_errors),
    ]
    print()
    for text, ok in checks:
        print(f"{text:<48} {verdict(ok)}")
    return all(ok for _, ok in checks)


def upload_benchmark(args: argparse.Namespace, work: Path) -> bool:
    source = cached_svs(*args.upload_slide)
    size = source.stat().st_size
    print(f"\nupload: {source.name}, {size / 1e9:.2f} GB ({size} bytes)")
    warm_page_cache(source)  # both measurements read it from the page cache

    copy_target = work / "copy-target.svs"
    copy_s = fsync_copy(source, copy_target)
    copy_target.unlink()

    node = NodeProcess(
        work / "node-upload",
        settings={"workers": 2, "secret": SECRET, "reserve_bytes": 0},
        log=work / "node-upload.log",
    )
    peak: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            if node.proc is not None:
                for pid in group_pids(node.proc.pid):
                    peak[pid] = max(peak.get(pid, 0), status_kib(pid, "VmHWM"))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        node.start(timeout=60)
        sampler.start()
        write_token = mint(SECRET, ops={Operation.WRITE}, ttl=24 * 3600)
        upload_s, blob_id = tus_upload(node.url, source, write_token)
        stop.set()
        sampler.join()
        for pid in group_pids(node.pid):  # one last reading, now that all is done
            peak[pid] = max(peak.get(pid, 0), status_kib(pid, "VmHWM"))
    finally:
        stop.set()
        node.kill()

    copy_mbs = size / copy_s / 1e6
    upload_mbs = size / upload_s / 1e6
    ratio = upload_mbs / copy_mbs
    peak_mib = max(peak.values(), default=0) / 1024
    print(f"{'path':<28} {'seconds':>8} {'MB/s':>8}")
    print(f"{'read+write+fsync copy':<28} {copy_s:>8.2f} {copy_mbs:>8.1f}")
    print(f"{'tus upload (64 MiB PATCHes)':<28} {upload_s:>8.2f} {upload_mbs:>8.1f}")
    print(f"blob id {blob_id}")
    ok = ratio >= GOAL_UPLOAD_VS_COPY
    print(
        f"{f'upload / copy      {ratio:8.1%}   (goal >= {GOAL_UPLOAD_VS_COPY:.0%})':<48} {verdict(ok)}"
    )
    per_pid = ", ".join(f"{pid}: {kib / 1024:.0f} MiB" for pid, kib in sorted(peak.items()))
    print(f"node peak RSS (max VmHWM over process group): {peak_mib:.0f} MiB  [{per_pid}]")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds; 0 disables")
    parser.add_argument(
        "--upload-slide",
        type=int,
        nargs=2,
        default=UPLOAD_SLIDE,
        metavar=("W", "H"),
        help="dimensions of the generated slide to upload",
    )
    parser.add_argument("--skip-upload", action="store_true")
    args = parser.parse_args(argv)

    wrk = ensure_wrk()
    ok = True
    with tempfile.TemporaryDirectory(prefix="slidestore-load-", dir=REPO / ".cache") as tmp:
        work = Path(tmp)
        ok &= tile_benchmark(args, work, wrk)
        if not args.skip_upload:
            ok &= upload_benchmark(args, work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
