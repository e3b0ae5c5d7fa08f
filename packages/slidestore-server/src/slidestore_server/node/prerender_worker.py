"""``python -m slidestore_server.node.prerender_worker <slide> <base> [threads]``: render
the slide's Deep Zoom tiles into ``<base>/<rendition key>/``.

The node prerenders each slide in a child process: a renderer's transient buffers (a
Lanczos reduction reads up to 8x the tile's area) never count against the node's own
memory, and a slide that crashes the decoder takes down only this process.
Exit codes: 0 done, 3 not a renderable slide (the reason on stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path

from slidestore import open_slide
from slidestore.errors import SlidestoreError
from slidestore.protocols.deepzoom import DeepZoom, prerender
from slidestore.pyramid import PyramidOptions, open_pyramid
from slidestore_server.memory import limit_malloc_arenas

UNSUPPORTED_EXIT = 3
SOURCE_CACHE_BYTES = 32 << 20
"""Decoded source tiles kept while rendering: a strip of tiles and its halo."""


def main(argv: list[str]) -> int:
    limit_malloc_arenas()
    slide_path, base = Path(argv[0]), Path(argv[1])
    threads = int(argv[2]) if len(argv) > 2 else 1
    try:
        with open_slide(slide_path) as slide:
            pyramid = open_pyramid(slide, PyramidOptions(cache_bytes=SOURCE_CACHE_BYTES))
            deepzoom = DeepZoom(pyramid)
            prerender(deepzoom, base / deepzoom.rendition_key, threads=threads)
    except SlidestoreError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return UNSUPPORTED_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
