"""Rate limits kept in memory (per process): login failures and registrations.

Login failures count per (e-mail, client address) and per client address, never per
e-mail alone: a count per e-mail would let anyone lock a victim out of their own account
by failing on purpose (and renew the lock forever). The victim's own address keeps its
own count.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable


class SlidingWindow:
    """Events per key within the last ``window`` seconds."""

    def __init__(self, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window_seconds
        self.clock = clock
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str) -> deque[float]:
        entries = self._events.get(key)
        if entries is None:
            return deque()
        horizon = self.clock() - self.window
        while entries and entries[0] <= horizon:
            entries.popleft()
        if not entries:
            del self._events[key]  # idle keys do not pile up
        return entries

    def wait(self, key: str, limit: int) -> float:
        """Seconds until the key is below ``limit`` events again (0: it is now)."""
        entries = self._recent(key)
        if len(entries) < limit:
            return 0.0
        return entries[-limit] + self.window - self.clock()

    def add(self, key: str) -> None:
        self._events[key].append(self.clock())

    def clear(self, key: str) -> None:
        self._events.pop(key, None)


def _seconds(waits: list[float]) -> int:
    return max(1, math.ceil(max(waits))) if any(w > 0 for w in waits) else 0


class LoginRateLimiter:
    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        address_factor: int = 4,
    ) -> None:
        self.max_failures = max_failures
        self.address_limit = max_failures * address_factor
        self._failures = SlidingWindow(window_seconds, clock)

    @staticmethod
    def _keys(email: str, address: str) -> tuple[str, str]:
        return f"e:{address}:{email}", f"a:{address}"

    def retry_after(self, email: str, address: str) -> int:
        """Seconds until this address may try this account again (0: allowed now)."""
        pair, by_address = self._keys(email, address)
        return _seconds(
            [
                self._failures.wait(pair, self.max_failures),
                self._failures.wait(by_address, self.address_limit),
            ]
        )

    def failed(self, email: str, address: str) -> None:
        for key in self._keys(email, address):
            self._failures.add(key)

    def succeeded(self, email: str, address: str) -> None:
        self._failures.clear(self._keys(email, address)[0])


class AttemptLimiter:
    """At most ``limit`` attempts per client address in the window (each one counts)."""

    def __init__(
        self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._attempts = SlidingWindow(window_seconds, clock)

    def attempt(self, address: str) -> int:
        """Record an attempt and return 0, or the seconds to wait (nothing recorded)."""
        wait = _seconds([self._attempts.wait(address, self.limit)])
        if not wait:
            self._attempts.add(address)
        return wait
