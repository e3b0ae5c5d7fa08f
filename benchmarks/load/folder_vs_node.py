"""Tiles/s of ``slidestore-server serve DIR`` against a storage node, same slide, same load.

Run from the repository root (``nox -s load_folder`` does)::

    python benchmarks/load/folder_vs_node.py [--duration 10] [--connections 16]

Both servers run 2 uvicorn workers (httptools + uvloop) on one generated slide: the node
holds it as a blob (and prerenders its Deep Zoom levels, as after every upload), the folder
server reads it in place through a symlink. Two wrk runs per server, each after an identical
discarded warm-up: the deepest Deep Zoom level only (native tiles, passed through by both)
and the viewer-like mix of ``run_load.py`` (60/25/10/5 over the levels; both prerender the
levels between the scanner's before the runs, the folder server into its cache directory).
The node gets a read token, the folder server on loopback none. Numbers swing with whatever
else runs on the machine: compare the ratio, from one run.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_load import (
    PATHS_PER_SERVER,
    SECRET,
    SEED,
    ensure_wrk,
    run_wrk,
    tile_paths,
    wait_prerendered,
    write_lua,
)

import slidestore
from slidestore.blobs import BlobStore
from slidestore.protocols.deepzoom import DeepZoom
from slidestore.protocols.deepzoom.prerender import is_complete
from slidestore.testing import cached_svs
from slidestore.tokens import Operation, mint
from slidestore_server.folder.index import scan
from slidestore_server.testing import NodeProcess, free_port, wait_http

SLIDE = (30000, 24000)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    wrk = ensure_wrk()
    slide_path = cached_svs(*SLIDE)
    with tempfile.TemporaryDirectory(prefix="folder-vs-node-") as tmp:
        work = Path(tmp)
        folder = work / "slides"
        folder.mkdir()
        (folder / slide_path.name).symlink_to(slide_path)
        (folder_id,) = scan(folder)
        blob_id = BlobStore(work / "node" / "blobs", reserve_bytes=0).put_file(slide_path)
        token = mint(SECRET, ops={Operation.READ}, ttl=24 * 3600)
        with slidestore.open_slide(slide_path) as slide:
            level_tiles = DeepZoom(slide).level_tiles
        deepest = len(level_tiles) - 1
        templates = {
            "node": f"/slides/{blob_id}_files/{{level}}/{{col}}_{{row}}.jpeg?token={token}",
            "folder": f"/slides/{folder_id}_files/{{level}}/{{col}}_{{row}}.jpeg",
        }
        scripts: dict[tuple[str, str], Path] = {}
        for name, template in templates.items():
            mixed = tile_paths(level_tiles, template, count=PATHS_PER_SERVER, seed=SEED)
            cols, rows = level_tiles[deepest]
            rng = random.Random(SEED)
            native = [
                template.format(level=deepest, col=rng.randrange(cols), row=rng.randrange(rows))
                for _ in range(PATHS_PER_SERVER)
            ]
            scripts[name, "native"] = write_lua(native, work / f"{name}-native.lua", SEED)
            scripts[name, "mix"] = write_lua(mixed, work / f"{name}-mix.lua", SEED)
        node = NodeProcess(
            work / "node",
            settings={"workers": 2, "secret": SECRET, "reserve_bytes": 0, "prerender_threads": 2},
            log=work / "node.log",
        )
        port = free_port()
        served = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slidestore_server.cli",
                "serve",
                str(folder),
                "--port",
                str(port),
                "--workers",
                "2",
                "--cache-dir",
                str(work / "cache"),
            ],
            stdout=subprocess.DEVNULL,
        )
        folder_url = f"http://127.0.0.1:{port}"
        results: dict[tuple[str, str], float] = {}
        try:
            node.start(timeout=300)
            wait_prerendered(node.url, blob_id, token, slide_path.stat().st_size)
            wait_http(folder_url + "/", proc=served, timeout=300)
            rendition = work / "cache" / "renditions" / folder_id
            deadline = time.monotonic() + 900
            while not any(is_complete(d) for d in rendition.glob("*")):
                if time.monotonic() > deadline:
                    raise SystemExit("the folder server did not prerender within 900 s")
                time.sleep(1)
            print("folder server prerendered too")
            for (name, kind), script in scripts.items():
                url = node.url if name == "node" else folder_url
                kwargs = {"threads": args.threads, "connections": args.connections}
                run_wrk(wrk, url, script, duration=args.warmup, **kwargs)
                r = run_wrk(wrk, url, script, duration=args.duration, **kwargs)
                results[name, kind] = r.requests_per_s
                print(
                    f"  {name:6} {kind:6} {r.requests_per_s:9.1f} tiles/s  p50 {r.p50_ms:.2f} ms"
                    f"  p99 {r.p99_ms:.2f} ms  non-2xx {r.non_2xx}"
                )
        finally:
            node.kill()
            served.kill()
            served.wait(10)
    for kind in ("native", "mix"):
        ratio = results["folder", kind] / results["node", kind]
        print(f"folder / node ({kind}): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
