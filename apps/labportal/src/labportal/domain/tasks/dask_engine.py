"""The Dask client tasks run on: a scheduler's address from settings, or an embedded
LocalCluster (one single-threaded worker process per core, or ``dask_workers``)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from labportal.settings import Settings

log = logging.getLogger("labportal.tasks")


class DaskEngine:
    def __init__(self, settings: Settings) -> None:
        self.address = settings.dask_scheduler.strip()
        self.workers = settings.dask_workers or os.cpu_count() or 1
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()
        self.error = ""

    def client(self) -> Any:
        """The ``distributed.Client`` (blocking: made on first use; call from a thread)."""
        from distributed import Client, LocalCluster

        with self._lock:
            if self._client is not None and self._client.status == "running":
                return self._client
            try:
                if self.address:
                    self._client = Client(self.address, set_as_default=False, timeout=10)
                else:
                    self._cluster = LocalCluster(
                        n_workers=self.workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                    )
                    self._client = Client(self._cluster, set_as_default=False)
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                raise
            self.error = ""
            return self._client

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.client)
        except Exception:
            log.exception("the Dask engine did not start")

    def _describe(self) -> dict[str, Any]:
        client = self.client()
        info = client.scheduler_info()
        return {"scheduler": client.scheduler.address, "workers": len(info.get("workers", {}))}

    async def health(self) -> tuple[str, dict[str, Any] | None]:
        """``("ok", {"scheduler", "workers"})``, or an error and what is known."""
        if self._client is None:
            return f"error: {self.error or 'starting'}", None
        try:
            async with asyncio.timeout(5):
                described = await asyncio.to_thread(self._describe)
        except Exception as exc:
            return f"error: {type(exc).__name__}: {exc}", None
        if not described["workers"]:
            return "error: the scheduler has no workers", described
        return "ok", described

    def close(self) -> None:
        with self._lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
