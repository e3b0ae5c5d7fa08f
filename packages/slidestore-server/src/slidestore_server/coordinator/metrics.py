"""The coordinator's Prometheus metrics (HTTP ones come from ``slidestore_server.metrics``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from slidestore.cluster import NodeState
from slidestore_server.metrics import HttpMetrics

_PLACEMENT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class CoordinatorMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.http = HttpMetrics(registry, "slidestore_coordinator")
        self.nodes = Gauge(
            "slidestore_cluster_nodes", "nodes by liveness state", ["state"], registry=registry
        )
        self.under_replicated = Gauge(
            "slidestore_cluster_blobs_under_replicated",
            "blobs with fewer counted copies than their target",
            registry=registry,
        )
        self.lost = Gauge(
            "slidestore_cluster_blobs_lost",
            "blobs whose every copy failed its checksums (quarantined): data lost",
            registry=registry,
        )
        self.blobs = Gauge("slidestore_cluster_blobs", "blobs known", registry=registry)
        self.copies_in_flight = Gauge(
            "slidestore_cluster_copies_in_flight", "repair copies running", registry=registry
        )
        self.copies = Counter(
            "slidestore_cluster_copies", "repair copies finished", ["result"], registry=registry
        )
        self.bytes_copied = Counter(
            "slidestore_cluster_bytes_copied", "bytes moved by repair copies", registry=registry
        )
        self.moves = Counter(
            "slidestore_cluster_rebalance_moves",
            "rebalancing moves finished",
            ["result"],
            registry=registry,
        )
        self.bytes_moved = Counter(
            "slidestore_cluster_rebalance_bytes",
            "bytes copied by rebalancing moves",
            registry=registry,
        )
        self.deletes = Counter(
            "slidestore_cluster_deletes", "copies deleted on nodes", ["reason"], registry=registry
        )
        self.archived = Counter(
            "slidestore_cluster_archived", "blobs archived after retention", registry=registry
        )
        self.placement_seconds = Histogram(
            "slidestore_cluster_placement_seconds",
            "time to answer POST /v1/placements",
            buckets=_PLACEMENT_BUCKETS,
            registry=registry,
        )
        self.archive_blobs = Gauge(
            "slidestore_cluster_archived_blobs", "blobs in the archive only", registry=registry
        )
        self.restoring = Gauge(
            "slidestore_cluster_restoring_blobs",
            "blobs coming back from the archive (fewer copies than R so far)",
            registry=registry,
        )
        self.archive_bytes = Gauge(
            "slidestore_cluster_archive_bytes",
            "bytes the archived blobs take in the archive (zstd where it paid)",
            registry=registry,
        )
        self.archive_saved_bytes = Gauge(
            "slidestore_cluster_archive_saved_bytes",
            "space saved by archiving: the R copies archived blobs no longer take on nodes, "
            "minus their archived objects",
            registry=registry,
        )
        self.leader = Gauge(
            "slidestore_cluster_leader", "1 while this coordinator leads", registry=registry
        )

    def record_counts(self, counts: dict[str, Any]) -> None:
        for state in NodeState:
            self.nodes.labels(state.value).set(counts["nodes"].get(state.value, 0))
        self.under_replicated.set(counts["blobs"]["under_replicated"])
        self.lost.set(counts["blobs"].get("lost", 0))
        self.blobs.set(counts["blobs"]["total"])
        self.restoring.set(counts["blobs"].get("restoring", 0))
        archived = counts.get("archive", {})
        self.archive_blobs.set(archived.get("blobs", 0))
        self.archive_bytes.set(archived.get("archive_bytes", 0))
        self.archive_saved_bytes.set(archived.get("saved_bytes", 0))
