"""The archive tier's layout (fsspec, under ``SLIDESTORE_ARCHIVE_URL``), one blob at a time:

- ``{blob_id}``, ``{blob_id}.zst`` or ``{blob_id}.ssjx``: the blob (raw, zstd or JPEG XL,
  ``slidestore.blobs.archive_codec``);
- ``{blob_id}.thumbnail.jpg``: its thumbnail, so the portal still shows an archived slide;
- ``{blob_id}.json``: its manifest (size, encoding, R, when, the slide's info), written
  last: an object without one is an unfinished archive, never trusted.

The manifests are what a coordinator whose database was lost (and whose nodes' ledgers
no longer remember the blob) rebuilds archived rows from. Deleting an archived blob
removes its manifest first, so a deletion cut short is never resurrected.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import anyio
import fsspec
import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from slidestore_server.coordinator import catalog
from slidestore_server.coordinator.db import upsert
from slidestore_server.coordinator.nodes import ArchivedCopy, NodeClient
from slidestore_server.coordinator.schema import blobs

THUMBNAIL = ".thumbnail.jpg"
MANIFEST = ".json"
THUMBNAIL_SIZE = 512


class ArchiveManifest(msgspec.Struct, frozen=True, kw_only=True):
    blob_id: str
    size: int
    url: str
    stored_bytes: int
    encoding: str
    target: int
    archived_at: float
    info: dict[str, Any] | None = None


def base_of(object_url: str) -> str:
    return object_url.rsplit("/", 1)[0]


async def _write(url: str, data: bytes) -> None:
    def write() -> None:
        fs, path = fsspec.core.url_to_fs(url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as out:
            out.write(data)

    await anyio.to_thread.run_sync(write)


async def _read(url: str) -> bytes | None:
    def read() -> bytes | None:
        fs, path = fsspec.core.url_to_fs(url)
        try:
            with fs.open(path, "rb") as found:
                data: bytes = found.read()
                return data
        except FileNotFoundError:
            return None

    return await anyio.to_thread.run_sync(read)


async def store_sidecars(
    nodes: NodeClient, source_url: str, copy: ArchivedCopy, blob_id: str, target: int
) -> None:
    """After the blob's object: its thumbnail and info from the node it came from, then
    the manifest that makes the archive complete."""
    base = base_of(copy.url)
    thumbnail = await nodes.fetch(
        source_url, f"/slides/{blob_id}/thumbnail?size={THUMBNAIL_SIZE}&format=jpeg"
    )
    if thumbnail is not None:
        await _write(f"{base}/{blob_id}{THUMBNAIL}", thumbnail)
    info_bytes = await nodes.fetch(source_url, f"/slides/{blob_id}/info")
    info = None
    if info_bytes is not None:
        with contextlib.suppress(msgspec.DecodeError):
            info = msgspec.json.decode(info_bytes, type=dict[str, Any])
    manifest = ArchiveManifest(
        blob_id=blob_id,
        size=copy.size,
        url=copy.url,
        stored_bytes=copy.stored_bytes,
        encoding=copy.encoding,
        target=target,
        archived_at=time.time(),
        info=info,
    )
    await _write(f"{base}/{blob_id}{MANIFEST}", msgspec.json.encode(manifest))


async def thumbnail(object_url: str, blob_id: str) -> bytes | None:
    return await _read(f"{base_of(object_url)}/{blob_id}{THUMBNAIL}")


async def purge(object_url: str, blob_id: str) -> None:
    """Remove a deleted blob's archive: the manifest first (see the module's note)."""
    base = base_of(object_url)

    def remove() -> None:
        fs, root = fsspec.core.url_to_fs(base)
        name = object_url.rsplit("/", 1)[1]
        for path in (
            f"{root}/{blob_id}{MANIFEST}",
            f"{root}/{name}",
            f"{root}/{blob_id}{THUMBNAIL}",
        ):
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path)

    await anyio.to_thread.run_sync(remove)


async def manifests(archive_url: str) -> list[ArchiveManifest]:
    """Every complete archive under ``archive_url`` (a coordinator rebuilding its rows)."""

    def scan() -> list[ArchiveManifest]:
        fs, root = fsspec.core.url_to_fs(archive_url.rstrip("/"))
        found = []
        try:
            names = fs.ls(root, detail=False)
        except FileNotFoundError:
            return []
        for name in names:
            if not str(name).endswith(MANIFEST):
                continue
            with contextlib.suppress(OSError, msgspec.DecodeError), fs.open(name, "rb") as f:
                found.append(msgspec.json.decode(f.read(), type=ArchiveManifest))
        return found

    return await anyio.to_thread.run_sync(scan)


async def adopt_manifests(conn: AsyncConnection, found: Sequence[ArchiveManifest]) -> int:
    """Archived rows for manifests whose blob this database does not know; how many."""
    if not found:
        return 0
    ids = [m.blob_id for m in found]
    known = {
        row.blob_id
        for row in await conn.execute(select(blobs.c.blob_id).where(blobs.c.blob_id.in_(ids)))
    }
    fresh = [m for m in found if m.blob_id not in known]
    if not fresh:
        return 0
    seq = await catalog.next_seq(conn)
    for m in fresh:
        stmt = upsert(conn, blobs).values(
            blob_id=m.blob_id,
            size=m.size,
            target=max(1, m.target),
            pinned=True,
            expires_at=None,
            created_at=m.archived_at,
            archived=True,
            deleted=False,
            deleted_at=m.archived_at,
            archive_url=m.url,
            archive_bytes=m.stored_bytes,
            archive_encoding=m.encoding,
            ledger_seq=seq,
        )
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=["blob_id"]))
    return len(fresh)
