"""Webhook endpoints: `POST /hooks/{namespace}/{trigger}` hands the raw body to the trigger's
webhook feed, which verifies it; 202 only once the event is stored. A refused delivery raises
the ApiError (400, 401, 404, 409, 413) that the error middleware renders.

The body is streamed, not read through `request.read()`: its limit is the feed's `maxBodyBytes`,
known only once the feed is looked up, and independent of the app's `client_max_size`.
"""

from __future__ import annotations

from aiohttp import web

from triggerhub.api.context import one_revalidation
from triggerhub.engine.feed_manager import FeedManager
from triggerhub.errors import PayloadTooLarge


def webhook_routes(feeds: FeedManager) -> list[web.RouteDef]:
    async def hook(request: web.Request) -> web.Response:
        async def read_body(limit_bytes: int) -> bytes:
            return await read_limited(request, limit_bytes)

        accepted = await feeds.handle_webhook(request.match_info["namespace"], request.match_info["trigger"],
                                              request.headers, read_body)
        return web.json_response({"id": accepted.id}, status=202)

    return [web.post("/hooks/{namespace}/{trigger}", one_revalidation(hook))]


async def read_limited(request: web.Request, limit_bytes: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to pass `limit_bytes`
    (from Content-Length before reading anything, else while streaming)."""
    declared = request.content_length
    if declared is not None and declared > limit_bytes:
        raise PayloadTooLarge(f"webhook body of {declared} bytes exceeds the limit of {limit_bytes} bytes")
    chunks: list[bytes] = []
    size_bytes = 0
    async for chunk in request.content.iter_any():
        size_bytes += len(chunk)
        if size_bytes > limit_bytes:
            raise PayloadTooLarge(f"webhook body of more than {limit_bytes} bytes exceeds the limit of "
                                  f"{limit_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
