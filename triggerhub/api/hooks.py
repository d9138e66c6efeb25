"""Webhook endpoints: `POST /hooks/{namespace}/{trigger}` hands the raw body to the trigger's
webhook feed, which verifies it; 202 only once the event is stored. A refused delivery raises
the ApiError (401, 404, 409, 413) that the error middleware renders."""

from __future__ import annotations

from aiohttp import web

from triggerhub.engine.feed_manager import FeedManager

MAX_HOOK_BYTES = 1024 * 1024


def webhook_routes(feeds: FeedManager) -> list[web.RouteDef]:
    async def hook(request: web.Request) -> web.Response:
        raw = await request.content.read(MAX_HOOK_BYTES + 1)
        accepted = await feeds.handle_webhook(request.match_info["namespace"], request.match_info["trigger"],
                                              request.headers, raw)
        return web.json_response({"id": accepted.id}, status=202)

    return [web.post("/hooks/{namespace}/{trigger}", hook)]
