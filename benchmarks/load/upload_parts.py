"""A large upload over a long link: one tus stream vs parallel partial uploads.

Run from the repository root (``nox -s upload_parts`` does)::

    python benchmarks/load/upload_parts.py [--size-gib 5] [--parts 4] [--delay-ms 25] [--window-mib 4]

It makes a slide of ``--size-gib`` (a real slide followed by random filler: OpenSlide
reads by offsets, so it stays a valid slide), starts a node, puts a
:class:`latency_link.LatencyLink` in front of it (``--delay-ms`` each way, at most
``--window-mib`` in flight per connection and direction: this kernel has no netem), and
uploads the file through the link with the SDK's tus client twice, in the same run: one
stream (``parts=1``), then ``--parts`` partial uploads joined by the node. It prints both
rates and their ratio; the blob is deleted between the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from slidestore import tokens
from slidestore.client.tus import TusOptions, TusUpload
from slidestore.client.tus_parallel import ParallelUpload
from slidestore.testing.paths import sample_slide_path
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess

sys.path.insert(0, str(Path(__file__).parent))
from latency_link import LatencyLink

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def make_slide(path: Path, size: int) -> str:
    """A slide of ``size`` bytes; returns its sha256."""
    digest = hashlib.sha256()
    head = sample_slide_path().read_bytes()
    filler = os.urandom(64 * MIB)
    with path.open("wb") as out:
        out.write(head)
        digest.update(head)
        left = size - len(head)
        while left > 0:
            piece = filler[: min(len(filler), left)]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


async def upload(url: str, secret: str, path: Path, size: int, sha256: str, parts: int) -> float:
    grant = tokens.mint(secret, ops={Operation.UPLOAD}, blob=sha256, size=size, ttl=3600)
    options = TusOptions(timeout=600.0)
    limits = httpx.Limits(max_connections=parts + 2)
    async with httpx.AsyncClient(limits=limits) as client:
        started = time.monotonic()
        if parts == 1:
            one = TusUpload(client, url, grant, path, size=size, sha256=sha256, options=options)
            blob = await one.run()
        else:
            many = ParallelUpload(
                client, url, grant, path, size=size, sha256=sha256, parts=parts, options=options
            )
            blob = await many.run()
        seconds = time.monotonic() - started
    assert blob == sha256, (blob, sha256)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=5.0)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=25.0)
    parser.add_argument("--window-mib", type=float, default=4.0)
    args = parser.parse_args()
    size = int(args.size_gib * (1 << 30))
    cache = REPO / ".cache"
    cache.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="upload-parts-", dir=cache))
    try:
        slide = work / "big.svs"
        started = time.monotonic()
        sha256 = make_slide(slide, size)
        print(f"slide: {size / (1 << 30):.2f} GiB made in {time.monotonic() - started:.0f}s")
        secret = tokens.new_secret()
        with NodeProcess(work / "node", settings={"secret": secret}) as node:
            port = int(node.url.rsplit(":", 1)[1])
            link = LatencyLink(
                "127.0.0.1", port, delay=args.delay_ms / 1000, window=int(args.window_mib * MIB)
            )
            link_url = f"http://127.0.0.1:{link.start()}/uploads"
            remover = tokens.mint(secret, ops={Operation.DELETE}, ttl=3600)
            results: dict[int, float] = {}
            for parts in (1, args.parts):
                seconds = asyncio.run(upload(link_url, secret, slide, size, sha256, parts))
                results[parts] = seconds
                print(
                    f"parts={parts}: {seconds:.1f}s, {size / MIB / seconds:.0f} MiB/s",
                    flush=True,
                )
                httpx.delete(
                    f"{node.url}/blobs/{sha256}",
                    headers={"Authorization": f"Bearer {remover}"},
                    timeout=120,
                )
            link.stop()
        one, many = results[1], results[args.parts]
        print(
            f"\n{size / (1 << 30):.2f} GiB over a link of {args.delay_ms:g} ms each way, "
            f"{args.window_mib:g} MiB window per connection (load average "
            f"{os.getloadavg()[0]:.1f}):\n"
            f"  1 stream   {one:7.1f} s  {size / MIB / one:6.0f} MiB/s\n"
            f"  {args.parts} parts    {many:7.1f} s  {size / MIB / many:6.0f} MiB/s\n"
            f"  ratio      {one / many:.2f}x faster with {args.parts} parts"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
