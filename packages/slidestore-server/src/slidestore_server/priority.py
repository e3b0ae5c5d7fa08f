"""Background threads step aside for requests: a lower CPU priority, never a higher one."""

from __future__ import annotations

import contextlib
import os
import threading


def lower_thread_priority(niceness: int) -> None:
    """Make the calling thread at least ``niceness`` nice (Linux niceness is per thread).

    Only ever lowers it: a node an operator started at nice 15 must not have threads that
    climb back to 10 (as root, ``setpriority`` would let them).
    """
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < niceness:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
