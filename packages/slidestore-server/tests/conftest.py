"""Real node processes on loopback."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest
from coordinator_kit import NODE_SECRET

from slidestore_server.testing import NodeProcess


@pytest.fixture
def start_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NodeProcess]]:
    """``start_node(**settings)``: a node subprocess on a free port, SIGKILLed at teardown.

    Settings are ``NodeSettings`` fields (passed as ``SLIDESTORE_*`` env vars); tests read
    the token secret back from ``node.settings["secret"]``.
    """
    started: list[NodeProcess] = []

    def start(**settings: str | int) -> NodeProcess:
        data_dir = tmp_path_factory.mktemp("node") / "data"
        node = NodeProcess(data_dir, settings={"secret": NODE_SECRET, **settings})
        started.append(node)
        return node.start()

    yield start
    for node in started:
        node.kill(signal.SIGKILL)
