"""The cluster client SDK: upload slides, find and delete blobs, read slides with failover.

``connect(url, token)`` gives a blocking :class:`Cluster`, ``aconnect(url, token)`` an
:class:`AsyncCluster` with the same methods as coroutines (the sync one runs the async
implementation on a loop thread of its own). See ``docs/cluster.md`` for the protocol.
"""

from slidestore.client.cluster import AsyncCluster, aconnect
from slidestore.client.http import Transport, error_from
from slidestore.client.replicas import ReplicaSet
from slidestore.client.slide import AsyncRemoteSlide, RemoteLevel, RemoteSlideInfo
from slidestore.client.store import FailoverHTTPStore
from slidestore.client.sync import Cluster, RemoteSlide, connect
from slidestore.client.tus import PrimaryUnreachable, TusOptions, TusUpload

__all__ = [
    "AsyncCluster",
    "AsyncRemoteSlide",
    "Cluster",
    "FailoverHTTPStore",
    "PrimaryUnreachable",
    "RemoteLevel",
    "RemoteSlide",
    "RemoteSlideInfo",
    "ReplicaSet",
    "Transport",
    "TusOptions",
    "TusUpload",
    "aconnect",
    "connect",
    "error_from",
]
