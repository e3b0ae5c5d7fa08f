"""The coordinator's API errors; they live in :mod:`slidestore.cluster.errors` (clients
see their codes), and are named here too for the coordinator's modules."""

from __future__ import annotations

from slidestore.cluster.errors import NoArchive, NodeUnknown, NotArchived, TooManyWaits, WaitTimeout

__all__ = ["NoArchive", "NodeUnknown", "NotArchived", "TooManyWaits", "WaitTimeout"]
