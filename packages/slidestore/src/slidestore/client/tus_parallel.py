"""One file to one node as several tus partial uploads sent at once, then joined by a
final upload (the tus concatenation extension).

A single connection over a long link spends its time waiting: each chunk's answer takes
a round trip, and TCP's window caps what one stream carries per round trip. Parts in
parallel fill the link. Each part is a :class:`~slidestore.client.tus.TusUpload` of its
byte range (resumed, retried and bounded exactly like a whole-file upload); the final
``POST`` names the parts in order, and is simply asked again when its answer is lost
(the node resumes or repeats it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable

import httpx

from slidestore.client.tus import (
    TusOptions,
    TusUpload,
)

MIN_PART = 16 << 20
"""A part smaller than this is not worth a connection of its own."""
JOIN_RATE = 50 << 20
"""Bytes per second a node is given to join the parts (copy and hash) before the final
request times out and is asked again."""


def part_ranges(size: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` (start, length) ranges covering ``size`` bytes, each at least
    :data:`MIN_PART` long (fewer parts for a small file)."""
    if size <= 0:
        return [(0, size)]
    count = max(1, min(parts, size // MIN_PART))
    step = -(-size // count)
    return [(start, min(step, size - start)) for start in range(0, size, step)]


class ParallelUpload:
    """``parts`` partial uploads of one file at once, then the final; :meth:`run`
    returns the blob id. Progress reports the bytes made durable over all parts."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        upload_url: str,
        token: str,
        path: str | os.PathLike[str],
        *,
        size: int,
        sha256: str,
        parts: int,
        options: TusOptions | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.progress = progress
        options = options or TusOptions()
        ranges = part_ranges(size, parts)
        self._durable = [0] * len(ranges)
        self.uploads = [
            TusUpload(
                client,
                upload_url,
                token,
                path,
                size=length,
                sha256=sha256,
                options=options,
                progress=self._reporter(index),
                start=start,
                partial=True,
            )
            for index, (start, length) in enumerate(ranges)
        ]
        # Joining copies and hashes the whole file on the node: its request may take a while.
        self.final = TusUpload(
            client,
            upload_url,
            token,
            path,
            size=size,
            sha256=sha256,
            options=dataclasses.replace(options, timeout=max(options.timeout, size / JOIN_RATE)),
        )

    def _reporter(self, index: int) -> Callable[[int], None]:
        def report(offset: int) -> None:
            self._durable[index] = offset
            if self.progress is not None:
                self.progress(sum(self._durable))

        return report

    async def run(self) -> str:
        locations = await asyncio.gather(*(upload.run() for upload in self.uploads))
        self.final.final_of = tuple(locations)
        return await self.final.run()


def file_upload(
    client: httpx.AsyncClient,
    upload_url: str,
    token: str,
    path: str | os.PathLike[str],
    *,
    size: int,
    sha256: str,
    parts: int,
    options: TusOptions,
    progress: Callable[[int], None],
) -> TusUpload | ParallelUpload:
    """One stream for a small file (or ``parts=1``), else a :class:`ParallelUpload`."""
    if len(part_ranges(size, parts)) == 1:
        return TusUpload(
            client,
            upload_url,
            token,
            path,
            size=size,
            sha256=sha256,
            options=options,
            progress=progress,
        )
    return ParallelUpload(
        client,
        upload_url,
        token,
        path,
        size=size,
        sha256=sha256,
        parts=parts,
        options=options,
        progress=progress,
    )
