"""Bounds on long polls (``GET /v1/blobs/{id}/wait``): how many one token may hold at
once, and how often each looks at the catalog.

Each waiting request queries the catalog every poll; one viewer token opening many at
once kept a core busy. Waits are counted per token nonce (a renewed token is the same
token) in this process: a token that grants ``read`` only may hold
:data:`MAX_VIEWER_WAITS`, a cluster client's (``write`` or ``admin``: the portal, the
SDK waiting for several uploads) :data:`MAX_CLIENT_WAITS`; beyond that 429
``too_many_waits`` with ``Retry-After``. Polls start quick (an upload's first copy is
usually reported within a heartbeat) and slow down to :data:`POLL_MAX`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from starlette.requests import Request

from slidestore.tokens import Capability, Operation
from slidestore_server.coordinator.errors import TooManyWaits

MAX_VIEWER_WAITS: Final = 4
MAX_CLIENT_WAITS: Final = 64
RETRY_AFTER_SECONDS: Final = 1
POLL_MIN: Final = 0.075
POLL_MAX: Final = 1.0


class WaitSlots:
    """Waits in progress per token nonce (one event loop: no lock needed)."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, cap: Capability) -> Iterator[None]:
        limit = MAX_CLIENT_WAITS if cap.allows(Operation.WRITE) else MAX_VIEWER_WAITS
        count = self._held.get(cap.nonce, 0)
        if count >= limit:
            raise TooManyWaits(
                f"this token already has {count} waits in progress (at most {limit}); "
                "retry when one ends",
                retry_after=RETRY_AFTER_SECONDS,
            )
        self._held[cap.nonce] = count + 1
        try:
            yield
        finally:
            if self._held[cap.nonce] <= 1:
                del self._held[cap.nonce]
            else:
                self._held[cap.nonce] -= 1


def wait_slots(request: Request) -> WaitSlots:
    """The app's (made with it in ``create_app``)."""
    slots: WaitSlots = request.app.state.wait_slots
    return slots


def poll_intervals() -> Iterator[float]:
    """Seconds between looks: from :data:`POLL_MIN`, half as often again each time."""
    interval = POLL_MIN
    while True:
        yield interval
        interval = min(POLL_MAX, interval * 1.5)
