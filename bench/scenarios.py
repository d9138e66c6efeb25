"""The scenarios of `python -m bench`, in run order, and the floors their rows are divided by.

A floor scenario records its first measurement as a row; `Context.add` measures a floor again
beside every row that names it. Servers started for a run stay up, idle, until the run ends.
"""

from __future__ import annotations

from collections.abc import Callable

from bench import paths_databases, paths_delivery, paths_distributed, paths_docker, paths_http, paths_mqtt
from bench.context import Context
from bench.measure import Row

FLOORS: dict[str, Callable[[Context], Row]] = {
    "floor.aiohttp": paths_http.measure_floor_aiohttp,
    "floor.unix": paths_http.measure_floor_unix,
    "floor.mqtt": paths_mqtt.measure_floor_mqtt,
    "floor.docker_run": paths_docker.measure_floor_docker_run,
    "floor.store": paths_databases.measure_floor_store,
}


def floor_scenario(name: str) -> Callable[[Context], None]:
    def run(ctx: Context) -> None:
        ctx.add(FLOORS[name](ctx))
    return run


SCENARIOS: dict[str, Callable[[Context], None]] = {
    "floor.aiohttp": floor_scenario("floor.aiohttp"),
    "floor.unix": floor_scenario("floor.unix"),
    "floor.mqtt": floor_scenario("floor.mqtt"),
    "floor.docker_run": floor_scenario("floor.docker_run"),
    "rss": paths_http.rss,
    "invoke.process": paths_http.invoke_process,
    "sequence": paths_http.sequence,
    "fires.one": paths_http.fires_one,
    "fires.many": paths_http.fires_many,
    "delivery": paths_delivery.delivery,  # retries and derived triggers / the plain path, same hub (issue 14)
    "webhook": paths_http.webhook,
    "http_function": paths_http.http_function,
    "mqtt.stored": paths_mqtt.mqtt_stored,
    "mqtt.reply": paths_mqtt.mqtt_reply,
    "docker.cold": paths_docker.docker_cold,
    "docker.prewarmed": paths_docker.docker_prewarmed,  # before invoke.docker fills its hub's pool
    "invoke.docker": paths_docker.invoke_docker,
    "distributed": paths_distributed.distributed,
    "floor.store": floor_scenario("floor.store"),
    "feeds.databases": paths_databases.feed_databases,
}
