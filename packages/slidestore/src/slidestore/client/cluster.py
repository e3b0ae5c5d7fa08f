"""The asynchronous cluster client: the one implementation the sync client runs too."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import msgspec
from tqdm import tqdm

from slidestore import errors
from slidestore.client import direct, health
from slidestore.client.auth import TokenProvider
from slidestore.client.hashing import CHUNK_SIZE, sha256_file
from slidestore.client.http import Transport
from slidestore.client.replicas import fetch_blob_view
from slidestore.client.slide import AsyncRemoteSlide
from slidestore.client.tus import (
    GrantSpent,
    PrimaryFull,
    PrimaryUnreachable,
    TusOptions,
)
from slidestore.client.tus_parallel import file_upload
from slidestore.cluster import wire
from slidestore.tokens import Operation

Wait = Literal["primary", "all"]

_encoder = msgspec.json.Encoder()
_placement_decoder = msgspec.json.Decoder(wire.Placement)
_blob_decoder = msgspec.json.Decoder(wire.BlobView)
_nodes_decoder = msgspec.json.Decoder(list[wire.NodeView])

MAX_PLACEMENTS = 3
"""Placements tried per upload (each new one excludes the primaries that failed)."""
DEFAULT_PARTS = 4
"""Partial uploads sent at once for a large file (tus concatenation)."""
WAIT_POLL = 30.0
"""Seconds one ``…/wait`` long poll may take before we ask again."""


def _progress_bar(enabled: bool, total: int, desc: str) -> tqdm[Any]:
    return tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not enabled
    )


class AsyncCluster:
    """A connection to a slidestore cluster (its coordinators) with one token.

    ``async with aconnect(url, token) as cluster`` or ``cluster = await aconnect(...)``.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        token: str | TokenProvider | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        http: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.transport = Transport(
            url, token, timeout=timeout, retries=retries, backoff=backoff, http=http
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transport.coordinators!r})"

    # -- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __await__(self) -> Generator[Any, None, Self]:
        async def ready() -> Self:
            return self

        return ready().__await__()

    # -- blobs ---------------------------------------------------------------------------

    async def info(self, blob_id: str) -> wire.BlobView:
        """The coordinator's view of a blob: size, replicas, status, retention."""
        return await fetch_blob_view(self.transport, blob_id)

    blob = info

    async def replicas(self, blob_id: str) -> list[wire.ReplicaView]:
        return list((await self.info(blob_id)).replicas)

    async def delete(self, blob_id: str) -> None:
        """Delete the blob on every node (needs a token granting ``delete``)."""
        await self.transport.coordinator(
            "DELETE",
            f"{wire.API}/blobs/{blob_id}",
            ok=(200, 204),
            ops={Operation.DELETE},
            blob=blob_id,
        )

    # -- lifecycle (an operator's, or a portal's: ``admin``) --------------------------------

    async def restore(self, blob_id: str, retention: wire.Retention | None = None) -> wire.BlobView:
        """Bring an archived blob back: the nodes pull it from the archive until it has R
        copies (its status is ``restoring`` until then: poll :meth:`info` for progress).
        ``retention``: its retention from now on (pinned by default). 409 ``not_archived``
        when it has no archived copy."""
        return await self._blob_call(
            "POST", blob_id, "restore", _encoder.encode(retention or wire.Retention())
        )

    async def archive(self, blob_id: str) -> wire.BlobView:
        """Archive a blob now (the leader streams it into the archive, then drops its
        copies); 409 ``no_archive`` on a cluster without one."""
        return await self._blob_call("POST", blob_id, "archive", None, ok=(202,))

    async def set_lifecycle(self, blob_id: str, archive_after_days: float | None) -> wire.BlobView:
        """How many days the blob may go unread before it is archived (None: the cluster's
        default; 0: never)."""
        body = _encoder.encode(wire.Lifecycle(archive_after_days=archive_after_days))
        return await self._blob_call("PUT", blob_id, "lifecycle", body)

    async def archived_thumbnail(self, blob_id: str) -> bytes:
        """The JPEG thumbnail kept in the archive with an archived blob (``read``)."""
        response = await self.transport.coordinator(
            "GET", f"{wire.API}/blobs/{blob_id}/thumbnail", ops={Operation.READ}, blob=blob_id
        )
        return response.content

    async def _blob_call(
        self,
        method: str,
        blob_id: str,
        action: str,
        content: bytes | None,
        ok: tuple[int, ...] = (200,),
    ) -> wire.BlobView:
        response = await self.transport.coordinator(
            method,
            f"{wire.API}/blobs/{blob_id}/{action}",
            content=content,
            ok=ok,
            ops={Operation.ADMIN},
            blob=blob_id,  # a minting provider makes it an operator's token for this blob only
        )
        return _blob_decoder.decode(response.content)

    async def nodes(self) -> list[wire.NodeView]:
        """Every storage node the coordinator knows (an operator's view: ``admin``)."""
        response = await self.transport.coordinator(
            "GET", f"{wire.API}/nodes", ops={Operation.ADMIN}
        )
        return _nodes_decoder.decode(response.content)

    async def place(self, request: wire.PlacementRequest) -> wire.Placement:
        """Where a new blob goes: the primary, the other targets and the ``upload`` grant
        for one upload of that size (``write``). ``exists`` when the cluster has it."""
        response = await self.transport.coordinator(
            "POST",
            f"{wire.API}/placements",
            content=_encoder.encode(request),
            ok=(200, 201),
            ops={Operation.WRITE},
        )
        return _placement_decoder.decode(response.content)

    async def read_ranges(
        self, view: wire.BlobView, ranges: Sequence[tuple[int, int]]
    ) -> list[bytes]:
        """``(offset, length)`` byte ranges of the blob from one of its replicas (a
        ``download`` token on that blob): what a proof of possession is checked against."""
        return await direct.read_ranges(self.transport, view, ranges)

    async def slide_info(self, view: wire.BlobView) -> dict[str, Any] | None:
        """The slide's normalized metadata from a replica (None: no replica answered)."""
        return await direct.slide_info(self.transport, view)

    async def region_image(
        self,
        view: wire.BlobView,
        region: tuple[int, int, int, int],
        size: tuple[int, int],
        fmt: str = "png",
    ) -> bytes:
        """A level-0 region of the slide rendered at ``size`` by one of its replicas (a
        ``read`` token on that blob)."""
        return await direct.region_image(self.transport, view, region, size, fmt)

    async def health(self, *, nodes: bool = True, timeout: float = 3.0) -> health.Health:
        """Whether a coordinator answers and (``nodes``) a live storage node does too."""
        return await health.check(self.transport, nodes=nodes, timeout=timeout)

    async def wait(
        self, blob_id: str, replicas: int | None = None, *, timeout: float = 600.0
    ) -> wire.BlobView:
        """Until the blob has ``replicas`` healthy copies (default: its target R).

        Long polls of at most :data:`WAIT_POLL` seconds; :class:`ReplicationTimeout` after
        ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            poll = max(0.0, min(WAIT_POLL, left))
            params: dict[str, Any] = {"timeout": round(poll, 3)}
            if replicas is not None:
                params["replicas"] = replicas
            try:
                response = await self.transport.coordinator(
                    "GET",
                    f"{wire.API}/blobs/{blob_id}/wait",
                    params=params,
                    timeout=poll + self.transport.timeout,
                    ops={Operation.READ},
                    blob=blob_id,
                )
            except errors.ReplicationTimeout:
                # A poll that covered the time left was the last (a server answering
                # early gets no second ask in a busy loop).
                if time.monotonic() >= deadline or poll >= left:
                    raise
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                continue
            return _blob_decoder.decode(response.content)

    async def open(self, blob_id: str, *, replicas: list[str] | None = None) -> AsyncRemoteSlide:
        """The slide stored as ``blob_id``; ``replicas`` (node URLs) skips the coordinator."""
        return await AsyncRemoteSlide.open(self.transport, blob_id, replicas=replicas)

    # -- upload --------------------------------------------------------------------------

    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        progress: bool = True,
        wait: Wait = "primary",
        replicas: int | None = None,
        expires_at: float | None = None,
        retries: int = 8,
        chunk_size: int = CHUNK_SIZE,
        wait_timeout: float = 600.0,
        on_offset: Callable[[int], None] | None = None,
        parts: int = DEFAULT_PARTS,
    ) -> str:
        """Store the slide at ``path``; returns its blob id (the file's sha256, hex).

        ``wait="primary"`` returns once the primary node committed it; ``"all"`` once the
        cluster holds all R copies. ``retries`` failed requests in a row make the primary
        count as unreachable, and a primary that answers 507 at creation as full: the blob
        is then placed again without it (at most :data:`MAX_PLACEMENTS` placements).
        ``on_offset`` sees every durable offset (over all parts). A file of at least two
        :data:`~slidestore.client.tus_parallel.MIN_PART` goes up as up to ``parts`` tus
        partial uploads at once, which the node joins (``parts=1``: one stream).
        """
        if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= 16:
            raise errors.InvalidRequest(f"parts must be 1..16, got {parts!r}")
        if wait not in ("primary", "all"):
            raise errors.InvalidRequest(f"wait must be 'primary' or 'all', got {wait!r}")
        if not 0 < chunk_size <= CHUNK_SIZE:
            raise errors.InvalidRequest(f"chunk_size must be 1..{CHUNK_SIZE}, got {chunk_size}")
        file = Path(path)
        size = file.stat().st_size
        with _progress_bar(progress, size, f"hashing {file.name}") as bar:
            sha256 = await asyncio.to_thread(
                sha256_file, file, chunk_size=CHUNK_SIZE, progress=bar.update
            )
        exclude: list[str] = []
        options = TusOptions(
            chunk_size=chunk_size,
            retries=retries,
            backoff=self.transport.backoff,
            timeout=max(self.transport.timeout, 120.0),
        )
        for _ in range(MAX_PLACEMENTS):
            placement = await self.place(
                wire.PlacementRequest(
                    size=size,
                    sha256=sha256,
                    replicas=replicas,
                    exclude=tuple(exclude),
                    expires_at=expires_at,
                )
            )
            if placement.exists:
                break
            if placement.upload_url is None or placement.primary is None or not placement.token:
                raise errors.SlidestoreError(
                    f"placement for {file.name} names no primary/upload_url: {placement}"
                )
            with _progress_bar(progress, size, f"uploading {file.name}") as bar:

                def report(offset: int, bar: tqdm[Any] = bar) -> None:
                    bar.update(offset - bar.n)
                    if on_offset is not None:
                        on_offset(offset)

                upload = file_upload(
                    self.transport.client(),
                    placement.upload_url,
                    placement.token,
                    file,
                    size=size,
                    sha256=sha256,
                    parts=parts,
                    options=options,
                    progress=report,
                )
                try:
                    await upload.run()
                except (PrimaryUnreachable, PrimaryFull):
                    exclude.append(placement.primary.node_id)
                    continue
                except GrantSpent:
                    continue  # a lost answer used the grant up: a new placement, same nodes
            break
        else:
            raise errors.ClusterUnavailable(
                f"uploading {file.name}: no primary took it after {MAX_PLACEMENTS} placements "
                f"(unreachable or full: {', '.join(exclude)})"
            )
        if wait == "all":
            await self.wait(sha256, placement.replicas, timeout=wait_timeout)
        return sha256


def aconnect(
    url: str | Sequence[str],
    token: str | TokenProvider | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 0.25,
    http: httpx.AsyncBaseTransport | None = None,
) -> AsyncCluster:
    """An :class:`AsyncCluster`; use ``async with aconnect(...)`` or ``await aconnect(...)``.

    ``url`` is a coordinator URL or several (every coordinator answers the API). ``token``
    is the token to send, or a :class:`~slidestore.client.auth.TokenProvider` that mints
    the narrowest one per request (a service holding the cluster secret).
    """
    return AsyncCluster(url, token, timeout=timeout, retries=retries, backoff=backoff, http=http)
