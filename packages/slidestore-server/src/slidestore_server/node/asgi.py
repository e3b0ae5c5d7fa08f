"""Import target for ASGI servers: ``slidestore_server.node.asgi:app_from_env``."""

from __future__ import annotations

from starlette.applications import Starlette

from slidestore_server.memory import limit_malloc_arenas
from slidestore_server.node.app import create_app
from slidestore_server.settings import NodeSettings, from_env


def app_from_env() -> Starlette:
    limit_malloc_arenas()
    settings: NodeSettings = from_env(NodeSettings)
    return create_app(settings)
