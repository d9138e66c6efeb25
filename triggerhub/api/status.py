"""`GET /api/v1/status`: the health of each component of this hub process, for `triggerhub status`.

Authenticated like the rest of /api/v1. The composition root hands in one probe per component
(store, streams, container pool, feeds); each answers `{"status": "ok" | "degraded" | "down", ...}`
and sees the caller's identity, so per-namespace parts (feeds) show the caller's own only.
The answer is 200 with `"status": "ok"` only when every component is ok, else 503 with the same body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from triggerhub import __version__
from triggerhub.api.context import authenticate
from triggerhub.errors import TriggerhubError
from triggerhub.model import Identity

Probe = Callable[[Identity], Awaitable[dict[str, Any]]]
PROBE_TIMEOUT_S = 5.0
STATUS_PATH = "/api/v1/status"


def status_routes(mode: str, probes: Mapping[str, Probe]) -> list[web.RouteDef]:
    async def status(request: web.Request) -> web.Response:
        identity = await authenticate(request, required=True)
        assert identity is not None  # required=True raises instead of answering None
        components = {name: await _probe(probe, identity) for name, probe in probes.items()}
        healthy = all(component["status"] == "ok" for component in components.values())
        body = {"status": "ok" if healthy else "degraded", "mode": mode, "version": __version__,
                "namespace": identity.namespace, "components": components}
        return web.json_response(body, status=200 if healthy else 503)

    return [web.get(STATUS_PATH, status)]


async def _probe(probe: Probe, identity: Identity) -> dict[str, Any]:
    started = time.monotonic()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            answer = await probe(identity)
    except TimeoutError:
        return {"status": "down", "error": f"no answer within {PROBE_TIMEOUT_S:g} s"}
    except (TriggerhubError, OSError) as exc:
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"}
    # A probe may answer "degraded" itself (it works, but not everything under it does).
    return {"status": "ok", **answer, "probe_ms": round((time.monotonic() - started) * 1000, 1)}
