"""``GET /v1/blobs/{id}/wait`` against a real coordinator: one token holds a bounded
number of long polls at once; the excess is 429 with ``Retry-After``."""
# ruff: noqa: F811  (fixtures imported from coordinator_kit are test parameters here)

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import httpx
from coordinator_kit import (  # noqa: F401  (fixtures)
    SECRET,
    database_url,
    start_coordinator,
)

from slidestore import tokens
from slidestore.tokens import Operation
from slidestore_server.coordinator.waits import MAX_VIEWER_WAITS
from slidestore_server.testing import CoordinatorProcess

BLOB = hashlib.sha256(b"never gets a copy").hexdigest()
Start = Callable[..., CoordinatorProcess]


def viewer(nonce: str | None = None) -> str:
    return tokens.mint(SECRET, ops={Operation.READ}, blob=BLOB, ttl=600, nonce=nonce)


def wait(coordinator: CoordinatorProcess, token: str, timeout: float) -> httpx.Response:
    return httpx.get(
        f"{coordinator.url}/v1/blobs/{BLOB}/wait",
        params={"replicas": 1, "timeout": timeout},
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout + 10,
    )


def test_one_token_holds_a_bounded_number_of_waits(start_coordinator: Start) -> None:
    coordinator = start_coordinator()
    token = viewer()
    nonce = tokens.verify(SECRET, token).nonce
    answers: list[httpx.Response] = []

    def hold() -> None:
        answers.append(wait(coordinator, token, 3.0))

    holders = [threading.Thread(target=hold) for _ in range(MAX_VIEWER_WAITS)]
    for thread in holders:
        thread.start()
    time.sleep(1.0)  # every holder is waiting now
    started = time.monotonic()
    excess = wait(coordinator, token, 3.0)
    assert time.monotonic() - started < 1.0  # refused at once, not after waiting
    assert excess.status_code == 429, excess.text
    assert excess.json()["error"] == "too_many_waits"
    assert int(excess.headers["Retry-After"]) >= 1
    # A renewal is the same token; another viewer's token is not.
    assert wait(coordinator, viewer(nonce=nonce), 0.2).status_code == 429
    assert wait(coordinator, viewer(), 0.2).status_code == 408
    for thread in holders:
        thread.join()
    assert [a.status_code for a in answers] == [408] * MAX_VIEWER_WAITS
    # Waits that ended give their place back.
    assert wait(coordinator, token, 0.2).status_code == 408
