"""Data locality: Dask workers started on storage node hosts read blob files directly.

A worker started by ``slidestore-server dask-worker --scheduler tcp://… --node-data-dir
DIR`` (or by hand: ``SLIDESTORE_NODE_DATA_DIR=DIR dask worker tcp://… --resources
node-<node id>=1``) carries the worker resource ``node-<node id>`` and, in its
environment, the node's data directory. The engine restricts the tile tasks of a blob to
the workers whose node holds a replica; such a task opens ``DIR/blobs/ab/cd/<blob id>``
(the slide file itself) instead of reading the pyramid over HTTP.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from slidestore.blobs.ids import fanout, is_blob_id

__all__ = [
    "DATA_DIR_ENV",
    "local_blob_path",
    "node_id_of",
    "resource_name",
    "worker_argv",
    "workers_for_nodes",
]

DATA_DIR_ENV: Final = "SLIDESTORE_NODE_DATA_DIR"
"""The storage node data directory of the host a worker runs on (blobs under ``blobs/``)."""

_RESOURCE_PREFIX: Final = "node-"
_NODE_ID: Final = re.compile(r"^[0-9a-f]{32}$")


def resource_name(node_id: str) -> str:
    """The Dask worker resource that marks a worker as running on node ``node_id``."""
    return f"{_RESOURCE_PREFIX}{node_id}"


def node_id_of(data_dir: str | os.PathLike[str]) -> str:
    """The node id a storage node keeps in ``data_dir/node_id`` (the node must have run)."""
    path = Path(data_dir) / "node_id"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} does not exist: start the storage node once before its Dask worker"
        ) from None
    if not _NODE_ID.match(text):
        raise ValueError(f"{path} holds {text[:40]!r}, not a node id")
    return text


def local_blob_path(blob_id: str) -> Path | None:
    """The blob's file on this host when this worker runs on a node holding it."""
    data_dir = os.environ.get(DATA_DIR_ENV)
    if not data_dir or not is_blob_id(blob_id):
        return None
    path = Path(data_dir) / "blobs" / fanout(blob_id)
    return path if path.is_file() else None


def workers_for_nodes(workers: dict[str, Any], node_ids: Iterable[str]) -> list[str]:
    """Addresses (from ``client.scheduler_info()["workers"]``) of the workers on those nodes."""
    wanted = {resource_name(node_id) for node_id in node_ids}
    return sorted(
        address
        for address, info in workers.items()
        if wanted.intersection((info.get("resources") or {}).keys())
    )


def worker_argv(
    scheduler: str,
    data_dir: str | os.PathLike[str],
    *,
    nworkers: int | None = None,
    extra: Sequence[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """The ``dask worker`` command line and environment for a worker on this node's host.

    One thread per worker process (the models are CPU bound and hold the GIL)."""
    node_id = node_id_of(data_dir)
    argv = [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        scheduler,
        "--nthreads",
        "1",
        "--nworkers",
        str(nworkers or os.cpu_count() or 1),
        "--resources",
        f"{resource_name(node_id)}=1",
        *extra,
    ]
    env = {**os.environ, DATA_DIR_ENV: str(Path(data_dir).resolve())}
    return argv, env


def main(argv: Sequence[str] | None = None) -> int:
    """``slidestore-server dask-worker``: run ``dask worker`` tied to a storage node."""
    import argparse
    import subprocess

    parser = argparse.ArgumentParser(
        prog="slidestore-server dask-worker",
        description="Run Dask workers on a storage node's host, reading its blobs locally.",
    )
    parser.add_argument("--scheduler", required=True, help="tcp://host:port of the scheduler")
    parser.add_argument("--node-data-dir", required=True, help="the node's SLIDESTORE_DATA_DIR")
    parser.add_argument("--nworkers", type=int, default=None, help="default: CPU count")
    args, extra = parser.parse_known_args(argv)
    command, env = worker_argv(
        args.scheduler, args.node_data_dir, nworkers=args.nworkers, extra=extra
    )
    return subprocess.call(command, env=env)
