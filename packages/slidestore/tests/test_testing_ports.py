"""The test kit's ports: xdist workers never share one, and a port in use is skipped."""

from __future__ import annotations

import socket

import pytest

from slidestore.testing.ports import BLOCK, FIRST_PORT, free_port


def test_each_xdist_worker_draws_from_its_own_block(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: dict[str, set[int]] = {}
    for worker in ("gw5", "gw6", "gw8"):  # blocks no real worker of a 2-worker run uses
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        block = range(
            FIRST_PORT + int(worker[2:]) * BLOCK, FIRST_PORT + (int(worker[2:]) + 1) * BLOCK
        )
        ports = {free_port() for _ in range(20)}
        assert len(ports) == 20  # successive calls do not hand out the same port
        assert all(port in block for port in ports)
        drawn[worker] = ports
    assert not drawn["gw5"] & drawn["gw6"]
    assert max(max(ports) for ports in drawn.values()) < 32768  # below the ephemeral range


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw7")
    taken = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        for _ in range(BLOCK):  # a whole cycle through the block never yields it
            assert free_port() != taken


def test_outside_xdist_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # it really is free
