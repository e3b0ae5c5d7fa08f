"""The coordinator's API errors; they live in :mod:`slidestore.cluster.errors` (clients
see their codes), and are named here too for the coordinator's modules."""

from __future__ import annotations

from slidestore.cluster.errors import NodeUnknown, NotArchived, TooManyWaits, WaitTimeout

__all__ = ["NodeUnknown", "NotArchived", "TooManyWaits", "WaitTimeout"]
