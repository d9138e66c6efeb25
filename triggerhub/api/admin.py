"""Controller admin routes of distributed mode: invoker health, as OpenWhisk's controller serves it.

GET /invokers               {"invoker0": "up", "invoker1": "down"}
GET /invokers/healthy/count {"healthy": "1/2"}
GET /invokers/statistics    {"invoker0": {"ran": 12, "skipped": 0, "running": 1, "partitions": 2}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from aiohttp import web


class _Statistics(Protocol):
    def to_json(self) -> dict[str, int]: ...


class InvokerHealth(Protocol):
    def states(self) -> dict[str, str]: ...
    def healthy_count(self) -> str: ...
    def statistics(self) -> Mapping[str, _Statistics]: ...


def admin_routes(health: InvokerHealth) -> list[web.RouteDef]:
    async def invokers(request: web.Request) -> web.Response:
        return web.json_response(health.states())

    async def healthy_count(request: web.Request) -> web.Response:
        return web.json_response({"healthy": health.healthy_count()})

    async def statistics(request: web.Request) -> web.Response:
        return web.json_response({name: reported.to_json() for name, reported in health.statistics().items()})

    return [web.get("/invokers", invokers), web.get("/invokers/healthy/count", healthy_count),
            web.get("/invokers/statistics", statistics)]
