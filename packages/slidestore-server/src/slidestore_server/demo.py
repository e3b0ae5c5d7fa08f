"""The demo: a storage node on loopback serving the sample slide.

``python -m slidestore_server.demo`` stores the sample slide in a node's blob store,
starts the node, prints the URLs (DeepZoom, IIIF, zarr, metadata) with a read token, and
runs until Ctrl-C. ``--check`` fetches a tile from each protocol and exits instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

from slidestore import tokens
from slidestore.blobs import BlobStore
from slidestore.demo_slide import choose_demo_slide
from slidestore.tokens import Operation
from slidestore_server.launcher import NodeProcess
from slidestore_server.local_secret import secret_for


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slidestore-demo")
    parser.add_argument("--data-dir", type=Path, default=Path(".cache/demo/node"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("SLIDESTORE_DEMO_PORT", 8700))
    )
    parser.add_argument(
        "--slide",
        type=Path,
        default=None,
        help="slide to serve (default: the sample slide, else a generated one)",
    )
    parser.add_argument("--check", action="store_true", help="fetch one of each and exit")
    args = parser.parse_args(argv)

    try:
        chosen = choose_demo_slide(args.slide, args.data_dir.parent / "slides")
    except FileNotFoundError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    print(f"slide: {chosen.describe()}", flush=True)
    slide = chosen.path
    secret = os.environ.get("SLIDESTORE_SECRET") or secret_for(args.data_dir)
    blob_id = BlobStore(args.data_dir / "blobs", reserve_bytes=0).put_file(slide)
    node = NodeProcess(
        args.data_dir, port=args.port, settings={"secret": secret, "reserve_bytes": 0}
    )
    node.start()
    token = tokens.mint(secret, ops={Operation.READ, Operation.LABELS}, blob=blob_id, ttl=7 * 86400)
    q = f"?token={token}"
    urls = {
        "metadata": f"{node.url}/slides/{blob_id}/info{q}",
        "thumbnail": f"{node.url}/slides/{blob_id}/thumbnail{q}",
        "DeepZoom (OpenSeadragon)": f"{node.url}/slides/{blob_id}.dzi{q}",
        "a DeepZoom tile": f"{node.url}/slides/{blob_id}_files/12/3_4.jpeg{q}",
        "IIIF info.json": f"{node.url}/iiif/3/{blob_id}/info.json{q}",
        "a IIIF region": f"{node.url}/iiif/3/{blob_id}/0,0,1024,1024/512,/0/default.jpg{q}",
    }
    print(f"slidestore node at {node.url} serving {slide.name} as blob {blob_id}")
    for name, url in urls.items():
        print(f"  {name:26} {url}")
    print(f"  read token                 {token}")
    print(
        "  zarr in a notebook:        zarr.open_group("
        f'"{node.url}/zarr/{blob_id}", mode="r", '
        f'storage_options={{"headers": {{"Authorization": "Bearer {token}"}}}})'
    )
    try:
        if args.check:
            for name, url in urls.items():
                status, body = _get(url)
                print(f"  checked {name}: HTTP {status}, {len(body)} bytes")
                if status != 200 or not body:
                    return 1
            return 0
        print("Ctrl-C stops it.")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while node.proc is not None and node.proc.poll() is None:
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
