"""Loopback ports for servers started side by side (tests, demos, dev clusters).

``free_port`` binds port 0 and releases it, so the port is free *now* but any process can
take it before our server binds it. With pytest-xdist, two workers starting servers at the
same moment did just that: one worker's probe found the other's server answering on its
port and the test talked to a stranger. So each xdist worker draws from its own block of
ports below the kernel's ephemeral range (where no ``bind(0)`` or outgoing connection
lands), and no two workers can ever be handed the same port.
"""

from __future__ import annotations

import itertools
import os
import socket

#: Worker ``gwN`` owns ``[FIRST_PORT + N * BLOCK, FIRST_PORT + (N + 1) * BLOCK)``; the
#: blocks end below 32768, where Linux's ephemeral range starts by default.
FIRST_PORT = 20_000
BLOCK = 1_000
MAX_WORKERS = 12

_next_in_block = itertools.count()


def _worker_block() -> range | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    index = int(worker[2:]) % MAX_WORKERS
    start = FIRST_PORT + index * BLOCK
    return range(start, start + BLOCK)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback port nothing listens on, for a server about to start.

    Outside xdist: whatever the kernel hands out. Under xdist: the next bindable port of
    this worker's own block (cycling, skipping ports still in use).
    """
    block = _worker_block()
    if block is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port
    for _ in range(len(block)):
        port = block[next(_next_in_block) % len(block)]
        if _bindable(port):
            return port
    raise OSError(f"no free port left in {block}")
