"""``slidestore-server dev-cluster``: a coordinator and N nodes on loopback, for trying the
cluster on one machine. Every process is a subprocess (see ``testing.py``) with its data
under one directory; Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from slidestore import tokens
from slidestore.tokens import Operation
from slidestore_server.launcher import CoordinatorProcess, NodeProcess, ServerProcess
from slidestore_server.local_secret import secret_for


def run(*, nodes: int, data_dir: str, replicas: int | None, secret: str | None) -> int:
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    secret = tokens.check_secret(secret, "--secret") if secret else secret_for(root)
    coordinator_settings: dict[str, str | int] = {"secret": secret}
    if replicas is not None:
        coordinator_settings["replicas"] = replicas
    coordinator = CoordinatorProcess(
        root / "coordinator", settings=coordinator_settings, log=root / "coordinator.log"
    )
    started: list[ServerProcess] = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        started.append(coordinator.start())
        for index in range(nodes):
            node = NodeProcess(
                root / f"node{index}",
                settings={
                    "secret": secret,
                    "coordinator_url": coordinator.url,
                    "zone": f"zone{index % 3}",
                },
                log=root / f"node{index}.log",
            )
            started.append(node.start())
        admin = tokens.mint(secret, ops={Operation.ADMIN}, ttl=7 * 24 * 3600, subject="dev")
        print(f"coordinator  {coordinator.url}  (logs in {root})")
        for index, node in enumerate(started[1:]):
            print(f"node{index}        {node.url}")
        print(f"secret       {secret}")
        print(f"admin token  {admin}")
        print("Ctrl-C stops the cluster.", flush=True)
        while not stop.wait(1.0):
            for process in started:
                if process.proc is not None and process.proc.poll() is not None:
                    print(f"{process.url} exited with {process.proc.returncode}", file=sys.stderr)
                    process.proc = None
    finally:
        for process in reversed(started):
            process.stop()
    return 0
