"""Prerendering every slide's Deep Zoom tiles in the background, once per blob.

A blob's rendition lives in ``<data>/renditions/<blob_id>/<key>/`` (see
``slidestore.protocols.deepzoom.prerender``). One worker process of the node runs it —
the one holding ``renditions/.lock`` — one slide at a time, each in a child process at a
lower CPU priority (``prerender_worker``), so tile requests keep the cores when both want
them and the renderer's memory and any decoder crash stay out of the node. It wakes when an upload commits in its
own process and rescans the blob store every ``RESCAN_SECONDS`` for blobs that arrived
through other workers or replication. Until a rendition is complete, tiles it does not
hold yet are rendered on demand, with the same bytes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Final

from slidestore.blobs import BlobStore
from slidestore.protocols.deepzoom import Rendition
from slidestore.protocols.deepzoom.generator import RENDITION_VERSION
from slidestore.protocols.deepzoom.prerender import is_complete, read_manifest
from slidestore_server.node.prerender_worker import UNSUPPORTED_EXIT
from slidestore_server.priority import lower_thread_priority

log = logging.getLogger("slidestore.renditions")

RESCAN_SECONDS: Final = 5.0
NICENESS: Final = 10
UNSUPPORTED: Final = "unsupported"
"""Marker file: the blob is not a slide we can render (it is never retried)."""


class Prerenderer:
    def __init__(self, blobs: BlobStore, root: Path, *, threads: int = 1, enabled: bool = True):
        self.blobs = blobs
        self.root = root
        self.threads = max(1, threads)
        self.enabled = enabled
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self.current: str | None = None

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
        base.mkdir(parents=True, exist_ok=True)
        self.current = blob_id
        started = time.monotonic()
        command = [
            sys.executable,
            "-m",
            "slidestore_server.node.prerender_worker",
            str(self.blobs.path(blob_id)),
            str(base),
            str(self.threads),
        ]
        try:
            with subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=lambda: os.nice(NICENESS),
            ) as child:
                while child.poll() is None:
                    if self._stop.wait(0.2):
                        child.kill()
                        child.wait()
                        return
                reason = (child.stderr.read() if child.stderr else b"").decode(errors="replace")
        finally:
            self.current = None
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
