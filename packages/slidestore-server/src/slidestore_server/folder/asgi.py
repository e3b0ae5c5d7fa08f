"""Import target for ASGI servers: ``slidestore_server.folder.asgi:app_from_env``."""

from __future__ import annotations

from starlette.applications import Starlette

from slidestore_server.folder.app import create_app
from slidestore_server.folder.settings import FolderSettings
from slidestore_server.memory import limit_malloc_arenas
from slidestore_server.settings import from_env


def app_from_env() -> Starlette:
    limit_malloc_arenas()
    settings: FolderSettings = from_env(FolderSettings)
    return create_app(settings)
