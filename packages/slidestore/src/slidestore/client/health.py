"""Is the cluster there: the coordinator answers, and some storage node it calls alive
answers too (what a service's readiness check wants to know)."""

from __future__ import annotations

import asyncio

import msgspec

from slidestore import errors
from slidestore.client.http import TRANSIENT, Transport
from slidestore.cluster import wire
from slidestore.cluster.model import NodeState
from slidestore.tokens import Operation

_nodes_decoder = msgspec.json.Decoder(list[wire.NodeView])


class Health(msgspec.Struct, frozen=True):
    coordinator: str
    """``ok`` or ``error: <why>``."""
    nodes: str | None = None
    """``ok``, ``error: <why>``, or None when not asked (or the coordinator failed)."""

    @property
    def ok(self) -> bool:
        return self.coordinator == "ok" and self.nodes in ("ok", None)


async def _answers(transport: Transport, url: str, timeout: float) -> str:
    try:
        response = await transport.client().get(f"{url}/healthz", timeout=timeout)
    except TRANSIENT as exc:
        return f"error: {type(exc).__name__}"
    return "ok" if response.status_code == 200 else f"error: HTTP {response.status_code}"


async def check(transport: Transport, *, nodes: bool = True, timeout: float = 3.0) -> Health:
    """The coordinators' ``/healthz`` (the first that answers), then, when ``nodes``, the
    node list (an ``admin`` call) and each live node's ``/healthz``: ok when one answers."""
    coordinator = "error: no coordinator"
    for url in transport.coordinators:
        coordinator = await _answers(transport, url, timeout)
        if coordinator == "ok":
            break
    if coordinator != "ok" or not nodes:
        return Health(coordinator=coordinator)
    try:
        response = await transport.coordinator(
            "GET", f"{wire.API}/nodes", ops={Operation.ADMIN}, timeout=timeout
        )
        views = _nodes_decoder.decode(response.content)
    except (errors.SlidestoreError, msgspec.DecodeError) as exc:
        return Health(coordinator=coordinator, nodes=f"error: {type(exc).__name__}: {exc}")
    urls = [v.url.rstrip("/") for v in views if v.state is NodeState.ALIVE]
    if not urls:
        return Health(coordinator=coordinator, nodes="error: no live storage node")
    results = await asyncio.gather(*(_answers(transport, url, timeout) for url in urls))
    reachable = "ok" in results
    return Health(
        coordinator=coordinator, nodes="ok" if reachable else "error: no storage node reachable"
    )
