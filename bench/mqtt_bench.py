"""MQTT ingest benchmark: messages/s from the first publish to the last `emit` returned.

    python bench/mqtt_bench.py [--count 5000] [--broker 127.0.0.1:18830] [--store-url sqlite+aiosqlite:///...]

Publishes `count` QoS 1 messages over wildcard topics to Mosquitto and runs one MqttFeed whose
emit stores each event (and its packet-id cursor) in a real SqlStore, the same path the hub
uses; a message is acknowledged to the broker only after that store transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from triggerhub.feeds.mqtt import MqttFeed, parse_mqtt_config
from triggerhub.model import TriggerEvent
from triggerhub.store.base import Acceptance
from triggerhub.store.sql import SqlStore

TRIGGER = "/guest/bench"


def publish(host: str, port: int, prefix: str, count: int, started: threading.Event) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{prefix}")
    client.max_inflight_messages_set(100)
    client.connect(host, port)
    client.loop_start()
    started.set()
    infos = [client.publish(f"{prefix}/dev{i % 50}/temp", json.dumps({"seq": i, "celsius": 21.5}), qos=1)
             for i in range(count)]
    for info in infos:
        info.wait_for_publish(timeout=120)
    client.disconnect()
    client.loop_stop()


async def run(count: int, host: str, port: int, store_url: str) -> None:
    store = SqlStore(store_url)
    await store.open()
    done = asyncio.Event()
    stored = 0

    async def emit(event: TriggerEvent, cursor: tuple[str, str] | None = None) -> bool:
        nonlocal stored
        full = (f"{TRIGGER}#{cursor[0]}", cursor[1]) if cursor else None
        accepted = await store.accept(Acceptance(event=event, cursor=full))
        stored += 1
        if stored == count:
            done.set()
        return accepted

    async def load(key: str) -> str | None:
        return await store.get_cursor(f"{TRIGGER}#{key}")

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    config = parse_mqtt_config({"url": f"mqtt://{host}:{port}", "topics": [f"{prefix}/+/temp"], "qos": 1})
    try:
        async with asyncio.TaskGroup() as tg:
            feed = MqttFeed(config, trigger=TRIGGER, tasks=tg, load_cursor=load, default_client_id=f"bench-{prefix}")
            await feed.start(emit)
            started = threading.Event()
            t0 = time.perf_counter()
            publisher = asyncio.create_task(asyncio.to_thread(publish, host, port, prefix, count, started))
            await done.wait()
            elapsed_s = time.perf_counter() - t0
            await publisher
            await feed.stop()
    finally:
        await store.close()
    events = count
    print(f"mqtt ingest: {events} QoS1 messages stored in {elapsed_s:.2f} s = {events / elapsed_s:,.0f} msg/s "
          f"(publish -> emit returned, store {store_url.split(':', 1)[0]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--broker", default="127.0.0.1:18830")
    parser.add_argument("--store-url", default=None, help="default: a fresh SQLite file in a temp dir")
    args = parser.parse_args()
    host, _, port = args.broker.partition(":")
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(run(args.count, host, int(port), url))


if __name__ == "__main__":
    main()
