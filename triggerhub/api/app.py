"""The aiohttp application: OpenWhisk REST API v1 and the info routes, inside the middlewares of
`middleware.py`.

Handlers live in `entities.py`, `deliveries.py` (dead letters), `activations.py`, `web_actions.py`,
`routes.py` (API gateway), `api_docs.py` and `dashboard.py` (the dashboard's page and stream); they
share the request plumbing of `context.py` and call the engine only.
"""

from __future__ import annotations

from aiohttp import web

from triggerhub import __version__
from triggerhub.api import activations, api_docs, dashboard, deliveries, entities, lineage, routes, web_actions
from triggerhub.api.context import ENGINE, MAX_REQUEST_BYTES
from triggerhub.api.middleware import MIDDLEWARES
from triggerhub.engine.core import Engine
from triggerhub.model import HUB_DEFAULT_KINDS, HUB_KINDS
from triggerhub.observe.exposition import metrics_handler


async def info_root(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    limits = engine.config.limits
    return web.json_response({
        "description": "OpenWhisk", "support": {"github": "triggerhub"}, "api_paths": ["/api/v1"],
        "limits": {
            "actions_per_minute": limits.invocations_per_minute, "triggers_per_minute": limits.fires_per_minute,
            "concurrent_actions": limits.concurrent_invocations, "sequence_length": limits.sequence_max_length,
            "default_min_action_duration": limits.min_timeout_ms, "default_max_action_duration": limits.max_timeout_ms,
            "default_min_action_memory": limits.min_memory_mb * 1024 * 1024,
            "default_max_action_memory": limits.max_memory_mb * 1024 * 1024,
            "min_action_duration": limits.min_timeout_ms, "max_action_duration": limits.max_timeout_ms,
            "min_action_memory": limits.min_memory_mb * 1024 * 1024, "max_action_memory": limits.max_memory_mb * 1024 * 1024,
            "default_min_action_logs": limits.min_logs_mb * 1024 * 1024, "default_max_action_logs": limits.max_logs_mb * 1024 * 1024,
            "min_action_logs": limits.min_logs_mb * 1024 * 1024, "max_action_logs": limits.max_logs_mb * 1024 * 1024,
        },
        "runtimes": {family: [{"kind": kind, "default": kind == default, "deprecated": False}
                              for kind in HUB_KINDS if kind.partition(":")[0] == family]
                     for family, default in HUB_DEFAULT_KINDS.items()},
    })


async def info_api(request: web.Request) -> web.Response:
    return web.json_response({
        "description": "OpenWhisk API", "api_version": "1.0.0", "api_version_path": "v1",
        "build": "triggerhub", "buildno": __version__,
        "swagger_paths": {"ui": "/docs", "api-docs": "/api-docs"},
    })


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="pong")


def create_app(engine: Engine, extra_routes: list[web.RouteDef] | None = None) -> web.Application:
    max_request = engine.config.api.max_code_bytes + 1024 * 1024
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=max_request)
    app[ENGINE] = engine
    app[MAX_REQUEST_BYTES] = max_request
    app.router.add_get("/", info_root)
    app.router.add_get("/ping", ping)
    app.router.add_get("/api/v1", info_api)
    app.router.add_get("/api/v1/", info_api)
    app.router.add_routes(entities.routes)
    app.router.add_routes(deliveries.routes)
    app.router.add_routes(activations.routes)
    app.router.add_routes(routes.routes)  # before web_actions: apimgmt is under /api/v1/web/
    app.router.add_routes(web_actions.routes)
    app.router.add_routes(api_docs.routes)
    app.router.add_routes(lineage.routes)
    app.router.add_routes([metrics_handler(engine.config.observe.metrics_token)])
    dashboard.install(app)
    if extra_routes:
        app.router.add_routes(extra_routes)
    return app
