"""The Dask client a run uses when none is given.

``SLIDESTORE_DASK_SCHEDULER=tcp://host:8786`` connects to a real scheduler; otherwise an
embedded ``distributed.LocalCluster`` (one single-threaded worker process per core: the
models hold the GIL) is started on first use, reused by every later run in this process
and closed at exit.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any, Final

import dask
from distributed import Client, LocalCluster

__all__ = ["SCHEDULER_ENV", "default_client", "engine_description", "local_cluster"]

SCHEDULER_ENV: Final = "SLIDESTORE_DASK_SCHEDULER"

_lock = threading.Lock()
_clients: dict[str, Client] = {}


def _close_all() -> None:
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        cluster = client.cluster
        client.close()  # type: ignore[no-untyped-call]
        if cluster is not None:
            cluster.close()


atexit.register(_close_all)


def default_client() -> Client:
    address = os.environ.get(SCHEDULER_ENV, "").strip()
    key = address or "local"
    with _lock:
        client = _clients.get(key)
        if client is not None and client.status == "running":
            return client
        if address:
            client = Client(address, set_as_default=False)  # type: ignore[no-untyped-call]
        else:
            cluster = local_cluster(os.cpu_count() or 1)
            client = Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
        _clients[key] = client
        return client


def local_cluster(n_workers: int) -> LocalCluster:
    """The embedded cluster: ``n_workers`` single-threaded worker processes, the dashboard
    on a free port, and Dask's statistical profiler off. That profiler samples every
    thread of every process (the scheduler's too) each 10 ms; on a laptop whose cores the
    workers already fill, it took ~8 % of the scheduler process's CPU and slowed the
    workers, and a slide run reads tiles whose cost the run's provenance reports anyway."""
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )


def engine_description(client: Client) -> dict[str, Any]:
    """For provenance: local (embedded) or a scheduler address, and the worker count."""
    workers = client.scheduler_info().get("workers", {})
    return {
        "kind": "local" if isinstance(client.cluster, LocalCluster) else "scheduler",
        "scheduler": client.scheduler.address if client.scheduler is not None else None,
        "workers": len(workers),
        "threads": sum(int(w.get("nthreads", 1)) for w in workers.values()),
    }
