"""Route for an event's lineage: `GET /api/v1/namespaces/{namespace}/events/{id}/lineage`.

Event ids may hold slashes (webhook ids name their trigger), so the id is everything between
`events/` and `/lineage`; encode it or not. The caller's own namespace only (`_` is it)."""

from __future__ import annotations

from aiohttp import web

from triggerhub.api.context import engine_of, identity_of, namespace_of
from triggerhub.errors import FORBIDDEN, Forbidden

routes = web.RouteTableDef()


@routes.get("/api/v1/namespaces/{namespace}/events/{id:.+}/lineage")
async def get_lineage(request: web.Request) -> web.Response:
    identity = identity_of(request)
    if namespace_of(request, identity) != identity.namespace:
        raise Forbidden(FORBIDDEN)
    return web.json_response(await engine_of(request).lineage(identity, request.match_info["id"]))
