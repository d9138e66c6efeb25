"""The probes behind `GET /api/v1/status` in embedded mode: store, streams, pool and feeds.

Built by the composition root, which alone holds the concrete store, pool and feed manager.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from triggerhub.api.status import Probe
from triggerhub.engine.core import Engine
from triggerhub.engine.feeds import FeedManager
from triggerhub.invoker.pool import ContainerPool
from triggerhub.model import Collection, Identity
from triggerhub.store.base import Store


def embedded_probes(engine: Engine, store: Store, pool: ContainerPool, feeds: FeedManager,
                    runtime_name: str) -> dict[str, Probe]:
    async def store_probe(identity: Identity) -> dict[str, Any]:
        triggers = await store.count_entities(Collection.TRIGGERS, identity.namespace)
        return {"kind": store.__class__.__name__, "url": _without_password(engine.config.store_url),
                "triggers": triggers}

    async def streams_probe(identity: Identity) -> dict[str, Any]:
        return {"kind": "in-process (the store is the queue)", **engine.statistics()}

    async def pool_probe(identity: Identity) -> dict[str, Any]:
        return {"runtime": runtime_name, **dataclasses.asdict(pool.statistics())}

    async def feeds_probe(identity: Identity) -> dict[str, Any]:
        mine = [r for r in await store.list_feeds() if r.namespace == identity.namespace]
        listed = [{"trigger": r.trigger, "feed": r.feed, "status": r.status, "reason": r.reason,
                   **dataclasses.asdict(feeds.metrics(r.trigger))} for r in sorted(mine, key=lambda r: r.trigger)]
        failed = [f["trigger"] for f in listed if f["status"] not in ("active", "paused")]
        health = {"status": "degraded", "error": f"not running: {', '.join(failed)}"} if failed else {}
        return {**health, "count": len(listed), "feeds": listed}

    return {"store": store_probe, "streams": streams_probe, "pool": pool_probe, "feeds": feeds_probe}


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
