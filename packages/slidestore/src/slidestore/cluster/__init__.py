"""Cluster logic: node liveness and registry, replica placement, repair and
rebalance planning.

Pure and deterministic: no I/O, no clock of its own (callers pass ``now``), no database.
The coordinator persists the state (its SQL node registry is the one registry) and calls
these functions.
"""

from __future__ import annotations

from slidestore.cluster.errors import InvalidNodeReport, NoPlacement, UnknownNode
from slidestore.cluster.liveness import DEFAULT_TIMEOUTS, LivenessTimeouts, state_at
from slidestore.cluster.model import (
    DEFAULT_REPLICAS,
    DEFAULT_ZONE,
    BlobReplicas,
    CopyTask,
    NodeInfo,
    NodeState,
    RepairPlan,
    Transition,
    TrimTask,
)
from slidestore.cluster.placement import DEFAULT_CHOICES, place, rank
from slidestore.cluster.rebalance import DEFAULT_TOLERANCE, fill, fill_spread, plan_rebalance
from slidestore.cluster.repair import DEFAULT_MAX_COPIES, plan_repair

__all__ = [
    "DEFAULT_CHOICES",
    "DEFAULT_MAX_COPIES",
    "DEFAULT_REPLICAS",
    "DEFAULT_TIMEOUTS",
    "DEFAULT_TOLERANCE",
    "DEFAULT_ZONE",
    "BlobReplicas",
    "CopyTask",
    "InvalidNodeReport",
    "LivenessTimeouts",
    "NoPlacement",
    "NodeInfo",
    "NodeState",
    "RepairPlan",
    "Transition",
    "TrimTask",
    "UnknownNode",
    "fill",
    "fill_spread",
    "place",
    "plan_rebalance",
    "plan_repair",
    "rank",
    "state_at",
]
