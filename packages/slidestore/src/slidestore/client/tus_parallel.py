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
from urllib.parse import urljoin

import httpx

from slidestore import errors
from slidestore.client.http import response_error
from slidestore.client.tus import (
    BLOB_ID_HEADER,
    PrimaryFull,
    TusOptions,
    TusUpload,
    _error_code,
    _Retry,
    metadata_header,
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
        self.options = options or TusOptions()
        self.progress = progress
        self.path = os.fspath(path)
        self.size = size
        self.sha256 = sha256
        self.client = client
        self.upload_url = upload_url
        self.headers = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
        self.location: str | None = None
        """The final upload's URL, once it is made."""
        self._durable = [0] * len(part_ranges(size, parts))
        self.uploads = [
            TusUpload(
                client,
                upload_url,
                token,
                path,
                size=length,
                sha256=sha256,
                options=self.options,
                progress=self._reporter(index),
                start=start,
                partial=True,
            )
            for index, (start, length) in enumerate(part_ranges(size, parts))
        ]

    def _reporter(self, index: int) -> Callable[[int], None]:
        def report(offset: int) -> None:
            self._durable[index] = offset
            if self.progress is not None:
                self.progress(sum(self._durable))

        return report

    async def run(self) -> str:
        locations = await asyncio.gather(*(upload.run() for upload in self.uploads))
        return await self._final(locations)

    async def _final(self, locations: list[str]) -> str:
        headers = {
            **self.headers,
            "Upload-Concat": "final;" + " ".join(locations),
            "Upload-Metadata": metadata_header(
                {"filename": os.path.basename(self.path), "sha256": self.sha256}
            ),
        }
        # Its own failure count and backoff bound the retries; joining copies and hashes
        # the whole file on the node, so the request may take a while.
        timeout = max(self.options.timeout, self.size / JOIN_RATE)
        asker = TusUpload(
            self.client,
            self.upload_url,
            self.headers["Authorization"].removeprefix("Bearer "),
            self.path,
            size=self.size,
            sha256=self.sha256,
            options=dataclasses.replace(self.options, timeout=timeout),
        )
        while True:
            try:
                response = await asker._send("POST", self.upload_url, headers=headers)
            except _Retry:
                continue
            if response.status_code == 507:
                raise PrimaryFull(f"{self.upload_url} has no room to join {self.size} bytes")
            if response.status_code != 201:
                raise response_error(
                    response, f"joining {len(locations)} parts at {self.upload_url}"
                )
            blob_id: str | None = response.headers.get(BLOB_ID_HEADER)
            if blob_id != self.sha256:
                raise errors.ChecksumMismatch(
                    f"{self.path}: the node committed blob {blob_id}, expected {self.sha256} "
                    f"({_error_code(response) or 'no error code'})"
                )
            self.location = urljoin(self.upload_url, response.headers["Location"])
            return self.sha256
