"""A byte budget for renders in progress: admission by estimated memory, not by count.

A IIIF render of 25 Mpx takes a few hundred MB while it runs; eight at once took a node
from 0.7 to 2 GB. Each render's peak is estimated before it starts
(:func:`slidestore.protocols.iiif.render_bytes`) and admitted only while the estimates
of the renders in progress, plus its own, fit the budget. One that does not fit waits a
short while for others to finish, then is refused with :class:`~slidestore.errors.Busy`
(503 with Retry-After) rather than queueing without bound.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from slidestore.errors import Busy


class RenderBudget:
    """``async with budget.admit(nbytes):`` around a render. One per event loop."""

    def __init__(self, total_bytes: int, wait_seconds: float) -> None:
        if total_bytes < 1:
            raise ValueError(f"the render budget must be positive, got {total_bytes}")
        self.total_bytes = total_bytes
        self.wait_seconds = max(0.0, wait_seconds)
        self.in_use = 0
        """Bytes of the renders admitted and not yet finished."""
        self.peak = 0
        """The most ``in_use`` has been since the start."""
        self.admitted = 0
        self.refused = 0
        self._room = asyncio.Condition()

    def fits(self, nbytes: int) -> bool:
        """Whether a render of ``nbytes`` could ever be admitted."""
        return nbytes <= self.total_bytes

    @asynccontextmanager
    async def admit(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``nbytes`` of the budget for the body; :class:`Busy` when there is no
        room within ``wait_seconds``. Callers check :meth:`fits` first (a render larger
        than the whole budget is the request's fault, not the node's load)."""
        nbytes = max(0, nbytes)
        if not self.fits(nbytes):
            raise ValueError(f"{nbytes} bytes can never fit a budget of {self.total_bytes}")
        async with self._room:
            try:
                await asyncio.wait_for(
                    self._room.wait_for(lambda: self.in_use + nbytes <= self.total_bytes),
                    self.wait_seconds,
                )
            except TimeoutError:
                self.refused += 1
                raise Busy(
                    f"renders in progress hold {self.in_use >> 20} MiB of this node's "
                    f"{self.total_bytes >> 20} MiB render budget; this one needs about "
                    f"{math.ceil(nbytes / 2**20)} MiB",
                    retry_after=max(1.0, self.wait_seconds),
                ) from None
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
            self.admitted += 1
        try:
            yield
        finally:
            async with self._room:
                self.in_use -= nbytes
                self._room.notify_all()
