"""The embedded amqtt broker (`triggerhub up --mqtt-embedded`) with paho-mqtt 2 publishers and
the real MqttFeed: QoS 1 delivery, persistent sessions, retained state across a restart."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.plugins.cli import free_port
from tests.plugins.feeds import FakeStore, StoreEmit
from tests.plugins.waiting import wait_until
from triggerhub.errors import FeedError
from triggerhub.feeds.broker import embedded_broker
from triggerhub.feeds.mqtt import MqttFeed, parse_mqtt_config

TRIGGER = "/guest/sensors"


def publish(port: int, messages: list[tuple[str, dict[str, int]]], *, retain: bool = False) -> None:
    """Publish at QoS 1 and wait for every PUBACK (runs in a worker thread)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="publisher", protocol=MQTTProtocolVersion.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for info in [client.publish(topic, json.dumps(body), qos=1, retain=retain) for topic, body in messages]:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def feed_for(port: int, tg: asyncio.TaskGroup, emit: StoreEmit, client_id: str = "hub-feed") -> MqttFeed:
    config = parse_mqtt_config({"url": f"mqtt://127.0.0.1:{port}", "topics": ["sensors/#"], "protocol": "v311"})
    return MqttFeed(config, trigger=TRIGGER, tasks=tg, load_cursor=emit.load, default_client_id=client_id)


def payloads(store: FakeStore) -> list[object]:
    return [e.data["payload"] for e in store.events.values()]  # type: ignore[index]


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_a_qos1_publish_reaches_the_mqtt_feed(fake_store: FakeStore) -> None:
    port = free_port()
    emit = StoreEmit(fake_store, TRIGGER)
    async with embedded_broker("127.0.0.1", port), asyncio.TaskGroup() as tg:
        feed = feed_for(port, tg, emit)
        await feed.start(emit)
        await asyncio.to_thread(publish, port, [("sensors/kitchen/temp", {"celsius": 21}), ("other", {"x": 1})])
        await wait_until(lambda: len(emit.returned) == 1)
        await feed.stop()
    event = next(iter(fake_store.events.values()))
    assert (event.data["topic"], event.data["qos"], event.data["payload"], emit.returned) == (  # type: ignore[index]
        "sensors/kitchen/temp", 1, {"celsius": 21}, [True])
    assert refused(port)  # served only while the context was open


async def test_messages_published_while_the_feed_is_stopped_are_kept_for_it(fake_store: FakeStore) -> None:
    port = free_port()
    emit = StoreEmit(fake_store, TRIGGER)
    async with embedded_broker("127.0.0.1", port), asyncio.TaskGroup() as tg:
        feed = feed_for(port, tg, emit)
        await feed.start(emit)
        await feed.stop()
        await asyncio.to_thread(publish, port, [("sensors/a", {"seq": i}) for i in range(5)])
        again = feed_for(port, tg, emit)  # same client id: same session
        await again.start(emit)
        await wait_until(lambda: len(emit.returned) == 5)
        await again.stop()
    assert (payloads(fake_store), emit.returned) == ([{"seq": i} for i in range(5)], [True] * 5)


async def test_retained_state_survives_a_restart_with_persistence(tmp_path: Path, fake_store: FakeStore) -> None:
    port = free_port()
    path = tmp_path / "broker.db"
    async with embedded_broker("127.0.0.1", port, persistence_path=path):
        await asyncio.to_thread(publish, port, [("sensors/door", {"open": 1})], retain=True)
    emit = StoreEmit(fake_store, TRIGGER)
    async with embedded_broker("127.0.0.1", port, persistence_path=path), asyncio.TaskGroup() as tg:
        feed = feed_for(port, tg, emit)
        await feed.start(emit)
        await wait_until(lambda: len(emit.returned) == 1)
        await feed.stop()
    event = next(iter(fake_store.events.values()))
    assert (event.data["topic"], event.data["retain"], event.data["payload"]) == (  # type: ignore[index]
        "sensors/door", True, {"open": 1})


async def test_a_taken_port_or_a_public_address_is_refused() -> None:
    port = free_port()
    async with embedded_broker("127.0.0.1", port):
        with pytest.raises(FeedError) as taken:
            async with embedded_broker("127.0.0.1", port):
                pass
    assert str(taken.value).startswith(f"embedded MQTT broker could not listen on 127.0.0.1:{port}: ")
    assert str(taken.value).endswith("; stop whatever uses the port or run without --mqtt-embedded")
    with pytest.raises(FeedError) as public:
        async with embedded_broker("0.0.0.0", port):
            pass
    assert str(public.value) == "embedded MQTT broker host '0.0.0.0' is not a loopback address; use 127.0.0.1"
