"""The login rate limit: failed attempts per e-mail and per client address in a sliding window."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable


class LoginRateLimiter:
    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        address_factor: int = 4,
    ) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self.clock = clock
        self.address_factor = address_factor
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str) -> deque[float]:
        entries = self._failures[key]
        horizon = self.clock() - self.window
        while entries and entries[0] <= horizon:
            entries.popleft()
        if not entries:
            self._failures.pop(key, None)
            return deque()
        return entries

    def retry_after(self, email: str, address: str) -> int:
        """Seconds until another attempt is allowed (0: allowed now)."""
        waits = []
        for key, limit in (
            ("e:" + email, self.max_failures),
            ("a:" + address, self.max_failures * self.address_factor),
        ):
            entries = self._recent(key)
            if len(entries) >= limit:
                waits.append(entries[-limit] + self.window - self.clock())
        return max(1, math.ceil(max(waits))) if waits else 0

    def failed(self, email: str, address: str) -> None:
        now = self.clock()
        self._failures["e:" + email].append(now)
        self._failures["a:" + address].append(now)

    def succeeded(self, email: str) -> None:
        self._failures.pop("e:" + email, None)
