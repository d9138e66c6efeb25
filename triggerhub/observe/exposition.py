"""`GET /metrics`: the text exposition format of this process's registry, and the small loopback
HTTP listener that serves it from processes without the REST API (distributed worker, invokers,
feeds: TRIGGERHUB_METRICS_PORT or `--metrics-port`).

Prometheus scrapers do not send OpenWhisk keys, so /metrics needs no key by default; with
TRIGGERHUB_METRICS_TOKEN set it answers 401 unless `Authorization: Bearer <token>` is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from triggerhub.errors import ConfigError
from triggerhub.observe.metrics import GAUGES, REGISTRY

log = logging.getLogger(__name__)

REFRESH_TIMEOUT_S = 2.0
UNAUTHORIZED = "/metrics needs `Authorization: Bearer <token>` with the token set in TRIGGERHUB_METRICS_TOKEN"


async def render() -> bytes:
    """The registry in the text format, after the gauges that need I/O (Kafka lag) are refreshed;
    a refresh that fails or takes longer than REFRESH_TIMEOUT_S keeps the last values."""
    try:
        async with asyncio.timeout(REFRESH_TIMEOUT_S):
            await GAUGES.refresh()
    except TimeoutError:
        log.warning("metrics: refreshing the Kafka lag took over %.0f s; serving the last values", REFRESH_TIMEOUT_S)
    except Exception as exc:  # a scrape must not fail because the broker is away: say so, serve the rest
        log.warning("metrics: refreshing the Kafka lag failed (%s); serving the last values", exc)
    return generate_latest(REGISTRY)


def authorized(header: str | None, token: str) -> bool:
    if not token:
        return True
    expected = f"Bearer {token}".encode()
    return header is not None and hmac.compare_digest(header.encode(), expected)


def metrics_handler(token: str) -> web.RouteDef:
    async def metrics(request: web.Request) -> web.Response:
        if not authorized(request.headers.get("Authorization"), token):
            return web.json_response({"error": UNAUTHORIZED, "code": 401}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        body = await render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return web.get("/metrics", metrics)


@contextlib.asynccontextmanager
async def serving_metrics(*, host: str, port: int, token: str) -> AsyncIterator[int | None]:
    """Serve /metrics on host:port until the block ends; yields the bound port (None when `port`
    is 0: no listener)."""
    if port == 0:
        yield None
        return
    app = web.Application()
    app.router.add_routes([metrics_handler(token)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot serve /metrics on {host}:{port} ({exc.strerror}); choose another port with "
                          "TRIGGERHUB_METRICS_PORT or --metrics-port") from exc
        bound = runner.addresses[0][1]
        log.info("metrics served on http://%s:%d/metrics", host, bound)
        yield bound
    finally:
        await runner.cleanup()
