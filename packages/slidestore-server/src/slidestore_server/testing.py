"""Test kit: real server processes on loopback, for this package's tests and anyone's.

The processes are the launcher's (:mod:`slidestore_server.launcher`, which the demos and
``dev-cluster`` use too); this module names them for tests.
"""

from __future__ import annotations

from slidestore_server.launcher import (
    CoordinatorProcess,
    NodeProcess,
    ServerProcess,
    free_port,
    wait_http,
)

__all__ = ["CoordinatorProcess", "NodeProcess", "ServerProcess", "free_port", "wait_http"]
