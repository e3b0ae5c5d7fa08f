"""``python -m slidestore_server.node.prerender_worker <slide> <base> [threads [sums]]``:
render the slide's Deep Zoom tiles into ``<base>/<rendition key>/``.

The node prerenders each slide in a child process: a renderer's transient buffers (a
Lanczos reduction reads up to 8x the tile's area) never count against the node's own
memory, and a slide that crashes the decoder takes down only this process. With
``sums`` (the blob's checksum sidecar) every byte the renderer reads is checked first,
as for the node's own renders: a prerendered tile is never made of a corrupt copy.
Exit codes: 0 done, 3 not a renderable slide, 4 the disk filled up (a later attempt may
succeed), 5 the copy failed its checksums (the node quarantines it), 6 its checksums
could not be read (tried again later); the reason on stderr.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from slidestore import open_slide
from slidestore.blobs.checked import CheckedFile
from slidestore.blobs.sums import ChunkSums
from slidestore.errors import ReplicaCorrupt, SlidestoreError
from slidestore.protocols.deepzoom import DeepZoom, prerender
from slidestore.pyramid import PyramidOptions, open_pyramid
from slidestore_server.memory import limit_malloc_arenas

UNSUPPORTED_EXIT = 3
NO_SPACE_EXIT = 4
CORRUPT_EXIT = 5
NO_SUMS_EXIT = 6
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
SOURCE_CACHE_BYTES = 32 << 20
"""Decoded source tiles kept while rendering: a strip of tiles and its halo."""


def main(argv: list[str]) -> int:
    limit_malloc_arenas()
    slide_path, base = Path(argv[0]), Path(argv[1])
    threads = int(argv[2]) if len(argv) > 2 else 1
    sums = ChunkSums.load(Path(argv[3])) if len(argv) > 3 else None
    if len(argv) > 3 and sums is None:
        print(f"no checksums at {argv[3]}", file=sys.stderr)
        return NO_SUMS_EXIT
    try:
        # The fd is closed when the process ends.
        check = None if sums is None else CheckedFile(os.open(slide_path, os.O_RDONLY), sums)
        with open_slide(slide_path, check=check) as slide:
            pyramid = open_pyramid(slide, PyramidOptions(cache_bytes=SOURCE_CACHE_BYTES))
            deepzoom = DeepZoom(pyramid)
            prerender(deepzoom, base / deepzoom.rendition_key, threads=threads)
    except ReplicaCorrupt as exc:  # before OSError: it is one
        print(str(exc), file=sys.stderr)
        return CORRUPT_EXIT
    except (OSError, SlidestoreError) as exc:
        if _disk_full(exc):  # not the slide's fault: the node retries it later
            print(f"no space: {exc}", file=sys.stderr)
            return NO_SPACE_EXIT
        if not isinstance(exc, SlidestoreError):
            raise
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return UNSUPPORTED_EXIT
    return 0


def _disk_full(exc: BaseException | None) -> bool:
    """ENOSPC/EDQUOT, also when a library re-raised it as something else."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
