"""Import target for ASGI servers: ``slidestore_server.coordinator.asgi:app_from_env``."""

from __future__ import annotations

from starlette.applications import Starlette

from slidestore_server.coordinator.app import create_app
from slidestore_server.coordinator.settings import CoordinatorSettings
from slidestore_server.settings import from_env


def app_from_env() -> Starlette:
    settings: CoordinatorSettings = from_env(CoordinatorSettings)
    return create_app(settings)
