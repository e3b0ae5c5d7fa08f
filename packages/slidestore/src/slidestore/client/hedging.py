"""When a read should stop waiting for one replica and also ask the next.

Cassandra's speculative retry: a read that has not answered within the 99th percentile
of recent read latencies is probably stuck (a frozen or overloaded node), so a second
request goes to another replica and the first good answer wins. The delay follows the
recent p99, bounded below (a burst of fast reads must not double every read) and above
(a frozen node must not hold a read longer than that).
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Final

DEFAULT_FLOOR: Final = 0.05
DEFAULT_CEILING: Final = 1.0
_WINDOW: Final = 256
_MIN_SAMPLES: Final = 16


class HedgePolicy:
    """Recent successful read latencies (seconds) and the hedge delay they imply."""

    def __init__(
        self,
        *,
        floor: float = DEFAULT_FLOOR,
        ceiling: float = DEFAULT_CEILING,
        percentile: float = 0.99,
    ) -> None:
        if not 0 < floor <= ceiling:
            raise ValueError(f"need 0 < floor <= ceiling, got {floor} and {ceiling}")
        self.floor = floor
        self.ceiling = ceiling
        self.percentile = percentile
        self._samples: collections.deque[float] = collections.deque(maxlen=_WINDOW)
        self._lock = threading.Lock()  # reads run on several event loops' threads
        self.hedged = 0
        """Reads that sent a second request because the first was slow (for tests)."""

    def record(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)

    def delay(self) -> float:
        """How long to wait for one replica before also asking the next."""
        with self._lock:
            samples = sorted(self._samples)
        if len(samples) < _MIN_SAMPLES:
            return self.ceiling / 2
        at = min(len(samples) - 1, math.ceil(self.percentile * len(samples)) - 1)
        return min(self.ceiling, max(self.floor, samples[at]))
