"""Loopback ports for test servers: :mod:`slidestore.ports` (the servers' launcher uses it
too), named here for the test kits."""

from slidestore.ports import BLOCK, FIRST_PORT, MAX_WORKERS, free_port

__all__ = ["BLOCK", "FIRST_PORT", "MAX_WORKERS", "free_port"]
