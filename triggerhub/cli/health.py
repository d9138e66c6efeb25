"""The probes behind `GET /api/v1/status`: embedded (store, streams, pool, feeds) and a distributed
controller's (store, Kafka consumer lag, invokers, feeds).

Built by the composition root, which alone holds the concrete store, pool and feed manager.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from triggerhub.api.status import Probe
from triggerhub.engine.core import Engine
from triggerhub.engine.feed_manager import FeedManager
from triggerhub.invoker.pool import ContainerPool
from triggerhub.model import Collection, Identity
from triggerhub.store.base import Store

if TYPE_CHECKING:  # distributed mode's modules load Kafka clients: only the controller needs them
    from triggerhub.bus.topics import Topics
    from triggerhub.config import KafkaConfig
    from triggerhub.engine.distributed import HealthMonitor


def distributed_probes(engine: Engine, store: Store, health: HealthMonitor, config: KafkaConfig,
                       topics: Topics) -> dict[str, Probe]:
    """A controller's view: store, Kafka (consumer lag per role), invokers by heartbeat, feeds."""
    groups = {topics.app_id("worker"): topics.trigger_events, topics.app_id("invokers"): topics.invocations,
              topics.app_id("feeds"): topics.feed_invocations}

    async def kafka_probe(identity: Identity) -> dict[str, Any]:
        from triggerhub.bus.lag import consumer_lag

        lags = await consumer_lag(config, groups)
        return {"bootstrap": config.bootstrap, **engine.statistics(),
                "groups": {group: dataclasses.asdict(lag) for group, lag in lags.items()}}

    async def invokers_probe(identity: Identity) -> dict[str, Any]:
        states = health.states()
        up = sum(1 for state in states.values() if state == "up")
        verdict = {} if states and up == len(states) else {"status": "degraded", "error": f"{up}/{len(states)} up"}
        return {**verdict, "healthy": health.healthy_count(), "invokers": states}

    async def feeds_probe(identity: Identity) -> dict[str, Any]:
        return await _feeds(store, identity, None)

    return {"store": _store_probe(engine, store), "kafka": kafka_probe, "invokers": invokers_probe,
            "feeds": feeds_probe}


def embedded_probes(engine: Engine, store: Store, pool: ContainerPool, feeds: FeedManager,
                    runtime_name: str) -> dict[str, Probe]:
    async def streams_probe(identity: Identity) -> dict[str, Any]:
        return {"kind": "in-process (the store is the queue)", **engine.statistics()}

    async def pool_probe(identity: Identity) -> dict[str, Any]:
        return {"runtime": runtime_name, **dataclasses.asdict(pool.statistics())}

    async def feeds_probe(identity: Identity) -> dict[str, Any]:
        return await _feeds(store, identity, feeds)

    return {"store": _store_probe(engine, store), "streams": streams_probe, "pool": pool_probe,
            "feeds": feeds_probe}


def _store_probe(engine: Engine, store: Store) -> Probe:
    async def store_probe(identity: Identity) -> dict[str, Any]:
        triggers = await store.count_entities(Collection.TRIGGERS, identity.namespace)
        return {"kind": store.__class__.__name__, "url": _without_password(engine.config.store_url),
                "triggers": triggers}
    return store_probe


async def _feeds(store: Store, identity: Identity, feeds: FeedManager | None) -> dict[str, Any]:
    """The caller's feeds with status and, where this process runs them, their counters."""
    mine = sorted((r for r in await store.list_feeds() if r.namespace == identity.namespace), key=lambda r: r.trigger)
    listed = [{"trigger": r.trigger, "feed": r.feed, "status": r.status, "reason": r.reason,
               **(dataclasses.asdict(feeds.metrics(r.trigger)) if feeds else {})} for r in mine]
    failed = [f["trigger"] for f in listed if f["status"] not in ("active", "paused")]
    verdict = {"status": "degraded", "error": f"not running: {', '.join(failed)}"} if failed else {}
    return {**verdict, "count": len(listed), "feeds": listed}


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
