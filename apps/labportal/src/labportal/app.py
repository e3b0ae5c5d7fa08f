"""The application factory: ``create_app(Settings)``; ``labportal.app:app`` for ASGI servers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar
from litestar.concurrency import sync_to_thread
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from sqlalchemy.ext.asyncio import async_sessionmaker

import labportal
from labportal.cluster import Cluster
from labportal.db import migrate
from labportal.db.engine import alchemy_config
from labportal.deps import provide_settings
from labportal.domain.accounts.controllers import AuthController, TokenController
from labportal.domain.annotations.controllers import (
    AnnotationController,
    MaterialAnnotations,
    TeamAnnotationClassesController,
)
from labportal.domain.cases.controllers import CaseController, TeamCasesController
from labportal.domain.discussion.controllers import CaseCommentsController, CommentController
from labportal.domain.fields.controllers import TeamFieldsController
from labportal.domain.materials.controllers import (
    CaseMaterialsController,
    MaterialController,
    TeamMaterialsController,
)
from labportal.domain.tasks.controllers import TASK_CONTROLLERS
from labportal.domain.tasks.dask_engine import DaskEngine
from labportal.domain.tasks.runner import TaskRunner
from labportal.domain.teams.controllers import InvitationController, TeamController
from labportal.errors import EXCEPTION_HANDLERS
from labportal.security.passwords import Passwords
from labportal.security.principal import SESSION_COOKIE, provide_optional_user, provide_principal
from labportal.security.ratelimit import AttemptLimiter, LoginRateLimiter
from labportal.settings import Settings
from labportal.system import logs
from labportal.system.health import HealthController
from labportal.system.metrics import Metrics, observability_middleware
from labportal.web import humanize
from labportal.web.pages import PAGE_CONTROLLERS

WEB = Path(__file__).parent / "web"
log = logging.getLogger("labportal")

API_CONTROLLERS = [
    AuthController,
    TokenController,
    TeamController,
    InvitationController,
    TeamCasesController,
    CaseController,
    CaseCommentsController,
    CommentController,
    CaseMaterialsController,
    TeamMaterialsController,
    MaterialController,
    TeamFieldsController,
    MaterialAnnotations,
    TeamAnnotationClassesController,
    AnnotationController,
    *TASK_CONTROLLERS,
]
FRONTEND = Path(__file__).parents[2] / "frontend"
VENDOR = {  # URL path -> directory inside frontend/node_modules (see frontend/package.json)
    "/vendor/openseadragon": "openseadragon/build/openseadragon",
    "/vendor/tus": "tus-js-client/dist",
    "/vendor/hash-wasm": "hash-wasm/dist",
    "/vendor/pico": "@picocss/pico/css",
}


def _vendor_routers(settings: Settings) -> list[Any]:
    """The browser libraries, served straight from node_modules (``npm ci`` in frontend/)."""
    modules = Path(settings.frontend_dir or FRONTEND) / "node_modules"
    routers = []
    for path, directory in VENDOR.items():
        if not (modules / directory).is_dir():
            log.warning("front-end library missing: run npm ci in %s", modules.parent)
            continue
        routers.append(
            create_static_files_router(
                path=path, directories=[modules / directory], include_in_schema=False
            )
        )
    return routers


def _words(engine: JinjaTemplateEngine) -> None:
    """The templates' filters and helpers for people (sizes, times, sentences)."""
    engine.engine.filters.update(humanize.FILTERS)
    engine.engine.globals.update(humanize.GLOBALS)


def _openapi() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="labportal",
        version=labportal.__version__,
        description="The slidestore lab portal API. Errors are RFC 9457 problem details.",
        path="/schema",
        render_plugins=[SwaggerRenderPlugin()],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http", scheme="bearer", description="Personal API token (lpt_...)"
                ),
                "session": SecurityScheme(
                    type="apiKey",
                    name=SESSION_COOKIE,
                    security_scheme_in="cookie",
                    description="Browser session; unsafe requests also need X-CSRF-Token",
                ),
            }
        ),
        security=[{"bearer": []}, {"session": []}],
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)

    async def migrate_on_start() -> None:
        if settings.migrate_on_start:
            log.info("migrating database", extra={"fields": {"revision": "head"}})
            await sync_to_thread(migrate.upgrade, settings.database_url)

    alchemy = alchemy_config(settings)
    cluster = Cluster(settings)
    state: dict[str, Any] = {
        "settings": settings,
        "alchemy": alchemy,
        "passwords": Passwords(settings),
        "login_limiter": LoginRateLimiter(
            settings.login_max_failures, settings.login_window_seconds
        ),
        "register_limiter": AttemptLimiter(
            settings.register_max_per_address, settings.register_window_seconds
        ),
        "metrics": Metrics(),
        "cluster": cluster,
        # Tasks run on Dask: in this process unless task_runner is off (then only
        # ``labportal worker`` processes run them; /readyz still checks a scheduler).
        "engine": DaskEngine(settings) if settings.task_runner or settings.dask_scheduler else None,
        "runner": None,
    }
    background: set[asyncio.Task[None]] = set()

    async def start_tasks(app: Litestar) -> None:
        engine = app.state.engine
        if engine is None or not settings.task_runner:
            if engine is not None:
                background.add(asyncio.create_task(engine.start()))
            return
        sessions = async_sessionmaker(alchemy.get_engine(), expire_on_commit=False)
        runner = TaskRunner(settings, sessions, engine)
        app.state.runner = runner
        background.add(asyncio.create_task(engine.start()))
        background.add(asyncio.create_task(runner.serve()))

    async def close_cluster(app: Litestar) -> None:
        if app.state.runner is not None:
            await app.state.runner.stop()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if app.state.engine is not None:
            await asyncio.to_thread(app.state.engine.close)
        await app.state.cluster.aclose()

    return Litestar(
        route_handlers=[
            HealthController,
            *API_CONTROLLERS,
            *PAGE_CONTROLLERS,
            create_static_files_router(
                path="/static", directories=[WEB / "static"], include_in_schema=False
            ),
            *_vendor_routers(settings),
        ],
        dependencies={
            "settings": Provide(provide_settings, sync_to_thread=False),
            "principal": Provide(provide_principal),
            "viewer": Provide(provide_optional_user),
        },
        plugins=[SQLAlchemyPlugin(config=alchemy)],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[observability_middleware],
        openapi_config=_openapi(),
        template_config=TemplateConfig(
            directory=WEB / "templates", engine=JinjaTemplateEngine, engine_callback=_words
        ),
        on_startup=[migrate_on_start, start_tasks],
        on_shutdown=[close_cluster],
        state=State(state),
        request_max_body_size=1024 * 1024,
        debug=settings.debug,
    )


def __getattr__(name: str) -> Any:
    if name == "app":  # ``uvicorn labportal.app:app`` builds from the environment
        return create_app()
    raise AttributeError(name)
