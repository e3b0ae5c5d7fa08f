"""The cluster client SDK: upload slides, find and delete blobs, read slides with failover.

``connect(url, token)`` gives a blocking :class:`Cluster`, ``aconnect(url, token)`` an
:class:`AsyncCluster` with the same methods as coroutines (the sync one runs the async
implementation on a loop thread of its own). See ``docs/cluster.md`` for the protocol.
The wire types a caller sees (``BlobView``, ``Placement``, ``NodeView``…) are re-exported
here, so a service built on the SDK needs no other module of slidestore to talk to a
cluster; a service holding the cluster secret passes a :class:`MintedTokens` provider.
"""

from slidestore.client.auth import MintedTokens, StaticToken, TokenProvider
from slidestore.client.cluster import AsyncCluster, aconnect
from slidestore.client.health import Health
from slidestore.client.http import Transport, error_from
from slidestore.client.replicas import ReplicaSet
from slidestore.client.slide import AsyncRemoteSlide, RemoteLevel, RemoteSlideInfo
from slidestore.client.store import FailoverHTTPStore
from slidestore.client.sync import Cluster, RemoteSlide, connect
from slidestore.client.tus import PrimaryUnreachable, TusOptions, TusUpload
from slidestore.cluster.wire import (
    BlobStatus,
    BlobView,
    NodeView,
    Placement,
    PlacementRequest,
    ReplicaView,
)

__all__ = [
    "AsyncCluster",
    "AsyncRemoteSlide",
    "BlobStatus",
    "BlobView",
    "Cluster",
    "FailoverHTTPStore",
    "Health",
    "MintedTokens",
    "NodeView",
    "Placement",
    "PlacementRequest",
    "PrimaryUnreachable",
    "RemoteLevel",
    "RemoteSlide",
    "RemoteSlideInfo",
    "ReplicaSet",
    "ReplicaView",
    "StaticToken",
    "TokenProvider",
    "Transport",
    "TusOptions",
    "TusUpload",
    "aconnect",
    "connect",
    "error_from",
]
