"""A resumable tus 1.0 upload of one local file to one node (creation + checksum).

The whole file's sha256 goes into ``Upload-Metadata`` (key ``sha256``, the hex digits,
base64 like every tus metadata value) so the node refuses to commit anything else;
every ``PATCH`` carries ``Upload-Checksum: sha256 <base64>`` of its chunk. At most one
chunk (≤ 8 MiB) is in memory.

Connection errors, timeouts, 5xx and 423 (our own cut-off request still being finished)
are retried with backoff after asking the node (``HEAD``) where the upload stands; an
upload the node forgot (404/410) starts over. After ``retries`` consecutive failures
without progress :class:`PrimaryUnreachable` is raised, and a node that has no room for
the upload (507 at creation) raises :class:`PrimaryFull`, so the caller can place the
blob elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin

import httpx

from slidestore import errors
from slidestore.client.hashing import CHUNK_SIZE, chunk_checksum, read_at
from slidestore.client.http import TRANSIENT, backoff_delay, is_transient_status, response_error

TUS_VERSION: Final = "1.0.0"
OFFSET_CONTENT_TYPE: Final = "application/offset+octet-stream"
BLOB_ID_HEADER: Final = "Slidestore-Blob-Id"


class PrimaryUnreachable(errors.ClusterUnavailable):
    """The node taking the upload stayed unreachable for ``attempts`` tries in a row."""

    code = "primary_unreachable"


class PrimaryFull(errors.InsufficientStorage):
    """The node refused to create the upload for lack of space (507): the coordinator's
    view of its free space is stale, so the caller places the blob elsewhere."""


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        return ""


class GrantSpent(errors.GrantUsed):
    """The placement's upload grant already made a session (our first POST got through but
    its answer was lost): only a new placement can start this upload again."""


@dataclass(frozen=True, kw_only=True)
class TusOptions:
    chunk_size: int = CHUNK_SIZE
    retries: int = 8
    """Consecutive failed requests (without progress) before giving up on the node."""
    backoff: float = 0.25
    max_backoff: float = 5.0
    timeout: float = 120.0
    """Per request; a chunk of ``chunk_size`` must get through within it."""


def metadata_header(values: dict[str, str]) -> str:
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode('ascii')}" for key, value in values.items()
    )


class _Retry(Exception):
    """Internal: this request failed in a way worth retrying."""


class TusUpload:
    """One file to one tus collection URL; :meth:`run` returns the blob id."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        upload_url: str,
        token: str,
        path: str | os.PathLike[str],
        *,
        size: int,
        sha256: str,
        options: TusOptions | None = None,
        progress: Callable[[int], None] | None = None,
        start: int = 0,
        partial: bool = False,
        final_of: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.upload_url = upload_url
        self.path = os.fspath(path)
        self.size = size
        """Bytes this upload sends: the file's ``size`` bytes from ``start``."""
        self.start = start
        self.partial = partial
        self.final_of = tuple(final_of)
        """A tus final upload: the URLs of the complete partial uploads it joins, in
        order. The node joins them in the creating ``POST``, whose answer names the blob
        (asked again when that answer is lost: the node resumes or repeats the join)."""
        """A tus partial upload (a piece of a :class:`~slidestore.client.tus_parallel.ParallelUpload`):
        complete when every byte is there, without a blob of its own."""
        self.sha256 = sha256
        self.options = options or TusOptions()
        self.progress = progress
        """Called with the durable offset whenever it changes."""
        self.headers = {"Tus-Resumable": TUS_VERSION, "Authorization": f"Bearer {token}"}
        self.location: str | None = None
        self.offset = 0
        self.blob_id: str | None = None
        self.failures = 0
        self.last_error: str = ""

    # -- bookkeeping ---------------------------------------------------------------------

    async def _failed(self, why: str) -> None:
        self.failures += 1
        self.last_error = why
        if self.failures > self.options.retries:
            raise PrimaryUnreachable(
                f"upload to {self.upload_url} failed {self.failures} times in a row (last: {why})"
            )
        await asyncio.sleep(
            backoff_delay(self.failures, self.options.backoff, self.options.max_backoff)
        )

    def _advance(self, response: httpx.Response) -> None:
        offset = int(response.headers["Upload-Offset"])
        if offset != self.offset:
            self.failures = 0
            self.offset = offset
            if self.progress is not None:
                self.progress(offset)
        self.blob_id = response.headers.get(BLOB_ID_HEADER) or self.blob_id

    async def _send(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            response = await self.client.request(
                method,
                url,
                timeout=self.options.timeout,
                **kwargs,  # type: ignore[arg-type]
            )
        except TRANSIENT as exc:
            await self._failed(f"{method}: {type(exc).__name__} {exc}".strip())
            raise _Retry from exc
        if is_transient_status(response.status_code) or response.status_code == 423:
            await self._failed(f"{method}: HTTP {response.status_code}")
            raise _Retry
        return response

    # -- the protocol --------------------------------------------------------------------

    async def _create(self) -> None:
        headers = dict(self.headers)
        if self.final_of:
            headers["Upload-Concat"] = "final;" + " ".join(self.final_of)
        else:
            headers["Upload-Length"] = str(self.size)
        if self.partial:
            headers["Upload-Concat"] = "partial"
        else:
            headers["Upload-Metadata"] = metadata_header(
                {"filename": os.path.basename(self.path), "sha256": self.sha256}
            )
        response = await self._send("POST", self.upload_url, headers=headers)
        if response.status_code == 403 and _error_code(response) == errors.GrantUsed.code:
            raise GrantSpent(f"the upload grant for {self.upload_url} already made a session")
        if response.status_code == 507:
            raise PrimaryFull(f"{self.upload_url} has no room for {self.size} bytes")
        if response.status_code != 201:
            raise response_error(response, f"creating an upload at {self.upload_url}")
        self.location = urljoin(self.upload_url, response.headers["Location"])
        failures, self.offset = self.failures, -1  # report the fresh offset, keep the count
        self._advance(response)
        self.failures = failures

    async def _head(self) -> None:
        assert self.location is not None
        response = await self._send("HEAD", self.location, headers=self.headers)
        if response.status_code in (404, 410):
            self.location = None  # forgotten or expired: start over
            return
        if response.status_code != 200:
            raise response_error(response, f"HEAD {self.location}")
        self._advance(response)

    async def _patch(self, fd: int) -> bool:
        """Send the next chunk; False when the offset must be asked for again."""
        assert self.location is not None
        data = await asyncio.to_thread(
            read_at,
            fd,
            self.start + self.offset,
            min(self.options.chunk_size, self.size - self.offset),
        )
        if not data:
            raise errors.ChecksumMismatch(f"{self.path} shrank below {self.size} bytes mid-upload")
        headers = {
            **self.headers,
            "Content-Type": OFFSET_CONTENT_TYPE,
            "Upload-Offset": str(self.offset),
            "Upload-Checksum": chunk_checksum(data),
        }
        try:
            response = await self._send("PATCH", self.location, headers=headers, content=data)
        finally:
            del data
        if response.status_code == 204:
            self._advance(response)
            return True
        if response.status_code in (404, 410):
            self.location = None
            return False
        if response.status_code == 409:  # our idea of the offset is stale
            await self._failed("PATCH: HTTP 409 offset mismatch")
            return False
        raise response_error(response, f"PATCH {self.location}")

    def _done(self) -> bool:
        if self.partial:
            return self.location is not None and self.offset >= self.size
        return self.blob_id is not None

    async def run(self) -> str:
        """Send the bytes; the blob id (a partial upload: its URL, once it is complete)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            need_head = False
            while not self._done():
                try:
                    if self.location is None:
                        await self._create()
                        need_head = False
                    elif need_head or self.offset >= self.size:
                        # Where does the upload stand? (A completed upload whose answer was
                        # lost is finished by this HEAD and reports the blob id.)
                        await self._head()
                        need_head = False
                        if self.offset >= self.size and not self._done():
                            await self._failed("upload has every byte but is not committed")
                    else:
                        need_head = not await self._patch(fd)
                except _Retry:
                    need_head = True
        finally:
            os.close(fd)
        if self.partial:
            assert self.location is not None
            return self.location
        if self.blob_id != self.sha256:
            raise errors.ChecksumMismatch(
                f"{self.path}: the node committed blob {self.blob_id}, expected {self.sha256}"
            )
        return self.blob_id
