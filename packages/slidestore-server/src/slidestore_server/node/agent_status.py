"""The cluster agent's last contact with the coordinator, readable by every worker.

``/readyz`` may land on any worker process, but only one runs the agent, so the agent
writes its state to ``data_dir/agent.status`` (atomically, by rename) after every attempt
and readiness reads it from there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

import msgspec

STATUS_FILE: Final = "agent.status"
STALE_HEARTBEATS: Final = 3
"""Missed heartbeat intervals after which the coordinator counts as unreachable."""
MIN_STALE_SECONDS: Final = 3.0


class AgentStatus(msgspec.Struct, kw_only=True):
    pid: int
    registered: bool = False
    last_success: float | None = None
    """Wall-clock time of the last answered registration or heartbeat."""
    last_error: str | None = None
    heartbeat_interval: float = 1.0


_decoder = msgspec.json.Decoder(AgentStatus)


def write_status(data_dir: Path, status: AgentStatus) -> None:
    path = data_dir / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    # Not fsynced: it describes the running process only and is rewritten every heartbeat.
    tmp.write_bytes(msgspec.json.encode(status))
    os.replace(tmp, path)


def read_status(data_dir: Path) -> AgentStatus | None:
    try:
        return _decoder.decode((data_dir / STATUS_FILE).read_bytes())
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def coordinator_problems(data_dir: Path, coordinator_url: str) -> list[str]:
    """Why this node is not in touch with its coordinator; empty when it is."""
    status = read_status(data_dir)
    if status is None or status.last_success is None:
        reason = f": {status.last_error}" if status is not None and status.last_error else ""
        return [f"not registered with coordinator {coordinator_url} yet{reason}"]
    age = time.time() - status.last_success
    if age > max(STALE_HEARTBEATS * status.heartbeat_interval, MIN_STALE_SECONDS):
        return [
            f"coordinator {coordinator_url} not reached for {age:.1f}s: "
            f"{status.last_error or 'no answer'}"
        ]
    return []
