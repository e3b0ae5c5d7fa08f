"""The cluster coordinator: node registry, placement, repair and retention over SQL.

The decisions come from ``slidestore.cluster`` (pure functions); this package persists
the state they need (SQLite or PostgreSQL), serves the API of ``docs/cluster.md`` and runs
the leader's loop that turns the decisions into HTTP calls to the nodes.
"""
