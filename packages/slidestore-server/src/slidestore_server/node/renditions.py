"""Prerendering every slide's Deep Zoom tiles in the background, once per blob.

A blob's rendition lives in ``<data>/renditions/<blob_id>/<key>/`` (see
``slidestore.protocols.deepzoom.prerender``). One worker process of the node runs it —
the one holding ``renditions/.lock`` — one slide at a time, each in a child process at a
lower CPU priority (``prerender_worker``), so tile requests keep the cores when both want
them and the renderer's memory and any decoder crash stay out of the node. It wakes when an upload commits in its
own process and rescans the blob store every ``RESCAN_SECONDS`` for blobs that arrived
through other workers or replication. Until a rendition is complete, tiles it does not
hold yet are rendered on demand, with the same bytes.

Renditions take disk space the upload guard must know about: before one starts, an
estimate of its size (:data:`RENDITION_SHARE` of the slide's) must fit in the free space
left after the reserve and every promise, and it is then promised itself (in
``renditions/.promised``, so every worker process's guard and the heartbeats count it) —
checked and recorded in the node's one critical section for space
(:meth:`~slidestore.blobs.space.SpaceGuard.promise`), so an upload created at the same
moment cannot be promised the same bytes. The promise shrinks as the child writes: what
is outstanding is the estimate less the bytes of the rendition's files so far, so the
free space reported (disk free − promises) never counts a byte twice. It is released
when the child ends, fails or is stopped. A rendition that does not fit, or whose child
hit ENOSPC, is dropped and tried again ``space_retry_seconds`` later — running out of
disk says nothing about the slide, so it is never marked unsupported for that. A child
that outgrows its estimate until the node's promises no longer fit its disk is stopped
the same way: what was promised to uploads is theirs.

A slide whose upload fits but whose rendition does not (a node with a little more free
space than the slide) is accepted, and its prerendering deferred until there is room:
the slide is the data of record, a rendition only a cache that on-demand rendering
replaces tile by tile with the same bytes. Refusing the upload for its rendition's sake
would leave the last third of every node's disk unusable for slides. What the reported
failure showed — an upload accepted and then failing at 90% of its bytes because a
rendition ate its room — cannot happen: the upload's whole length is promised at its
creation, and no rendition starts (or keeps running) on promised bytes.

Renditions are made only of checked bytes: the child holds every byte it reads to the
blob's checksum sidecar, and a copy that fails is quarantined (as a read would), never
marked unsupported. Every prerendered tile carries its own CRC (``pack.py``): one that
fails is rendered on demand instead and its level is made again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final, Protocol

import msgspec

from slidestore.blobs.space import SpaceGuard
from slidestore.blobs.sums import ChunkSums, sidecar_path
from slidestore.errors import BlobNotFound, InsufficientStorage, ReplicaCorrupt
from slidestore.protocols.deepzoom import Rendition
from slidestore.protocols.deepzoom.generator import RENDITION_VERSION
from slidestore.protocols.deepzoom.prerender import is_complete, read_manifest
from slidestore_server.node.prerender_worker import (
    CORRUPT_EXIT,
    NO_SPACE_EXIT,
    NO_SUMS_EXIT,
    UNSUPPORTED_EXIT,
)
from slidestore_server.priority import lower_thread_priority

log = logging.getLogger("slidestore.renditions")

RESCAN_SECONDS: Final = 5.0
NICENESS: Final = 10
UNSUPPORTED: Final = "unsupported"
"""Marker file: the blob is not a slide we can render (it is never retried)."""
PROMISED: Final = ".promised"
"""The bytes promised to the rendition in progress (absent: none)."""
RENDITION_SHARE: Final = 0.5
"""Estimated rendition size per byte of slide: a full Deep Zoom pyramid re-encoded as
JPEG measured about a third of the slide; a half leaves a margin."""
SPACE_RETRY_SECONDS: Final = 60.0


class _Promise(msgspec.Struct, frozen=True):
    """What ``renditions/.promised`` holds: the estimate for one blob's rendition."""

    blob: str
    bytes: int


def _written(directory: Path) -> int:
    """Bytes of the files under ``directory`` (a rendition in progress: a few packs)."""
    total = 0
    for path in directory.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # a partial pack renamed meanwhile
            if path.is_file():
                total += path.stat().st_size
    return total


class RenditionSource(Protocol):
    """What the prerenderer needs of the slides it renders: a node's blob store, or the
    folder server's index of a folder."""

    space: SpaceGuard  # where the renditions go: their estimate must fit before a start

    def ids(self) -> Iterable[str]: ...
    def path(self, blob_id: str) -> Path: ...
    def size(self, blob_id: str) -> int: ...
    def sums(self, blob_id: str) -> ChunkSums | None:
        """The blob's checksums (written beside it); None: a file that has none."""
        ...

    def corrupt(self, blob_id: str, why: str) -> Exception:
        """Quarantine a copy that failed its checksums."""
        ...


class Prerenderer:
    def __init__(
        self,
        blobs: RenditionSource,
        root: Path,
        *,
        threads: int = 1,
        enabled: bool = True,
        space_retry_seconds: float = SPACE_RETRY_SECONDS,
    ):
        self.blobs = blobs
        self.root = root
        self.threads = max(1, threads)
        self.enabled = enabled
        self.space_retry_seconds = space_retry_seconds
        self._retry_at: dict[str, float] = {}  # blob -> monotonic time; short of space
        blobs.space.add_source(self.promised_bytes)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self.current: str | None = None

    def promised_bytes(self) -> int:
        """What the rendition in progress (whichever process runs it) may still write: its
        estimate less the bytes its files hold so far."""
        try:
            promise = msgspec.json.decode((self.root / PROMISED).read_bytes(), type=_Promise)
        except (FileNotFoundError, msgspec.DecodeError):
            return 0
        return max(0, promise.bytes - _written(self.root / promise.blob))

    def _promise(self, promise: _Promise | None) -> None:
        path = self.root / PROMISED
        if promise is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_suffix(".tmp")
            temp.write_bytes(msgspec.json.encode(promise))
            os.replace(temp, path)

    def directory(self, blob_id: str, key: str) -> Path:
        return self.root / blob_id / key

    def status(self, blob_id: str, key: str) -> dict[str, object]:
        directory = self.directory(blob_id, key)
        manifest: Rendition | None = read_manifest(directory)
        if manifest is not None:
            state = "complete"
        elif (self.root / blob_id / UNSUPPORTED).exists():
            state = "unsupported"
        elif not self.enabled:
            state = "disabled"
        else:
            state = "rendering" if self.current == blob_id else "pending"
        body: dict[str, object] = {"key": key, "state": state}
        if manifest is not None:
            body.update(tiles=manifest.tiles, bytes=manifest.bytes, seconds=manifest.seconds)
        return body

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> bool:
        """Start the background thread unless another worker of this node already runs it."""
        if not self.enabled:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self._promise(None)  # a crashed renderer's promise: nothing is rendering now
        self._thread = threading.Thread(target=self._run, name="prerender", daemon=True)
        self._thread.start()
        return True

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def forget(self, blob_id: str) -> None:
        """Drop a deleted blob's renditions."""
        shutil.rmtree(self.root / blob_id, ignore_errors=True)

    # -- the work ----------------------------------------------------------------------

    def _run(self) -> None:
        lower_thread_priority(NICENESS)  # this thread and the pool it starts
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._pass()
            except Exception:  # a bug must not end prerendering for every later blob
                log.exception("prerendering pass failed")
            self._wake.wait(RESCAN_SECONDS)

    def _pass(self) -> None:
        held = set(self.blobs.ids())
        for stale in self.root.iterdir() if self.root.is_dir() else ():
            if stale.is_dir() and stale.name not in held:
                shutil.rmtree(stale, ignore_errors=True)
            elif stale.is_dir():
                # Renditions of an older version are never read again: give the space back.
                for old in stale.glob("*-r*"):
                    if old.is_dir() and not old.name.endswith(f"-r{RENDITION_VERSION}"):
                        shutil.rmtree(old, ignore_errors=True)
        for blob_id in sorted(held):
            if self._stop.is_set():
                return
            self._render(blob_id)

    def _render(self, blob_id: str) -> None:
        base = self.root / blob_id
        if (base / UNSUPPORTED).exists():
            return
        if any(is_complete(d) for d in base.glob(f"*-r{RENDITION_VERSION}")):
            return
        if time.monotonic() < self._retry_at.get(blob_id, 0.0):
            return
        try:
            estimate = int(self.blobs.size(blob_id) * RENDITION_SHARE)
        except FileNotFoundError:
            return  # deleted meanwhile
        promise = _Promise(blob_id, estimate)
        outstanding = max(0, estimate - _written(base))  # levels kept from an earlier try
        try:
            self.blobs.space.promise(outstanding, lambda: self._promise(promise))
        except InsufficientStorage as exc:
            self._retry_later(blob_id, f"its estimated {estimate} bytes do not fit: {exc}")
            return
        try:
            self._run_child(blob_id, base)
        finally:
            self._promise(None)

    def _retry_later(self, blob_id: str, why: str) -> None:
        self._retry_at[blob_id] = time.monotonic() + self.space_retry_seconds
        log.warning(
            "not prerendering %s for now (retried in %g s): %s",
            blob_id,
            self.space_retry_seconds,
            why,
        )

    def _run_child(self, blob_id: str, base: Path) -> None:
        try:
            # Written beside the blob if it had none (an old blob: re-hashed whole first).
            sums = self.blobs.sums(blob_id)
            path = self.blobs.path(blob_id)
        except (BlobNotFound, ReplicaCorrupt):
            return  # deleted, or found corrupt (and quarantined) meanwhile
        base.mkdir(parents=True, exist_ok=True)
        self.current = blob_id
        started = time.monotonic()
        command = [
            sys.executable,
            "-m",
            "slidestore_server.node.prerender_worker",
            str(path),
            str(base),
            str(self.threads),
            *([] if sums is None else [str(sidecar_path(path))]),
        ]
        try:
            with subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=lambda: os.nice(NICENESS),
            ) as child:
                overrun = False
                while child.poll() is None:
                    if self._stop.wait(0.2):
                        child.kill()
                        child.wait()
                        return
                    if self.blobs.space.available_bytes() < 0:
                        # Past its estimate and into bytes promised to others: stop now.
                        overrun = True
                        child.kill()
                        child.wait()
                reason = (child.stderr.read() if child.stderr else b"").decode(errors="replace")
        finally:
            self.current = None
        if overrun:
            reason = "the rendition outgrew its estimate into space promised to others"
        if overrun or child.returncode == NO_SPACE_EXIT:
            # Give the space back now; the whole rendition is made again later.
            for partial in base.iterdir():
                if partial.is_dir():
                    shutil.rmtree(partial, ignore_errors=True)
                else:
                    partial.unlink(missing_ok=True)
            self._retry_later(blob_id, f"the disk filled up: {reason.strip()[-300:]}")
            return
        if child.returncode == CORRUPT_EXIT:
            # The copy failed its checksums: quarantined like on any read (the node
            # heartbeats, repair brings a good copy, which is prerendered then).
            self.blobs.corrupt(blob_id, reason.strip()[-300:] or "failed while prerendering")
            shutil.rmtree(base, ignore_errors=True)
            return
        if child.returncode == NO_SUMS_EXIT:
            self._retry_later(blob_id, reason.strip()[-300:])
            return
        self._retry_at.pop(blob_id, None)
        if child.returncode == 0:
            log.info(
                "prerendered",
                extra={"blob_id": blob_id, "seconds": round(time.monotonic() - started, 2)},
            )
            return
        # Not renderable (or the renderer crashed on it): remember, never retry in a loop.
        # Tiles are still rendered on demand, where a bad one fails alone with a 4xx.
        if child.returncode == UNSUPPORTED_EXIT:
            text = reason.strip()
        else:
            text = f"renderer exited with {child.returncode}: {reason.strip()[-500:]}"
        log.warning("cannot prerender %s: %s", blob_id, text)
        (base / UNSUPPORTED).write_text(text + "\n")
