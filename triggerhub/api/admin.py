"""Controller admin routes of distributed mode: invoker health, as OpenWhisk's controller serves it.

GET /invokers               {"invoker0": "up", "invoker1": "down"}
GET /invokers/healthy/count {"healthy": "1/2"}
GET /invokers/statistics    {"invoker0": {"ran": 12, "skipped": 0, "running": 1, "partitions": 2}}
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web


class InvokerHealth(Protocol):
    def states(self) -> dict[str, str]: ...
    def healthy_count(self) -> str: ...
    def statistics(self) -> dict[str, dict[str, int]]: ...


def admin_routes(health: InvokerHealth) -> list[web.RouteDef]:
    async def invokers(request: web.Request) -> web.Response:
        return web.json_response(health.states())

    async def healthy_count(request: web.Request) -> web.Response:
        return web.json_response({"healthy": health.healthy_count()})

    async def statistics(request: web.Request) -> web.Response:
        return web.json_response(health.statistics())

    return [web.get("/invokers", invokers), web.get("/invokers/healthy/count", healthy_count),
            web.get("/invokers/statistics", statistics)]
