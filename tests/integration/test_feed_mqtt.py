"""MQTT feed against the real Mosquitto on loopback: wildcards, persistent sessions, shared
subscriptions, and acknowledgement only after the event is stored."""

from __future__ import annotations

import asyncio
import json
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.plugins.feeds import FakeStore, StoreEmit
from tests.plugins.waiting import wait_until
from triggerhub.feeds.mqtt import MqttFeed, parse_mqtt_config
from triggerhub.model import TriggerEvent

pytestmark = pytest.mark.mqtt
TRIGGER = "/guest/sensors"


def publish(broker: tuple[str, int], messages: list[tuple[str, dict]], qos: int = 1) -> None:
    """Publish and wait for every PUBACK (runs in a worker thread)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(*broker)
    client.loop_start()
    try:
        infos = [client.publish(topic, json.dumps(body), qos=qos) for topic, body in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def feed_for(broker: tuple[str, int], tg: asyncio.TaskGroup, emit: StoreEmit, topics: list[str],
             client_id: str, **params: object) -> MqttFeed:
    config = parse_mqtt_config({"url": f"mqtt://{broker[0]}:{broker[1]}", "topics": topics, **params})
    return MqttFeed(config, trigger=TRIGGER, tasks=tg, load_cursor=emit.load, default_client_id=client_id)


def seqs(store: FakeStore) -> list[int]:
    return sorted(e.data["payload"]["seq"] for e in store.events.values())


async def test_thousand_qos1_messages_across_wildcards_are_emitted_exactly_once(
        mqtt_broker: tuple[str, int], fake_store: FakeStore) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    emit = StoreEmit(fake_store, TRIGGER)
    messages = [(f"{prefix}/dev{i % 10}/temp" if i % 2 else f"{prefix}/alerts/zone{i % 3}/high", {"seq": i})
                for i in range(1000)]
    unmatched = [(f"{prefix}/dev1/humidity", {"seq": -1}), (f"{prefix}/other", {"seq": -2})]
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(mqtt_broker, tg, emit, [f"{prefix}/+/temp", f"{prefix}/alerts/#"], f"c-{prefix}")
        await feed.start(emit)
        await asyncio.to_thread(publish, mqtt_broker, messages + unmatched)
        await wait_until(lambda: len(emit.returned) >= 1000)
        await feed.stop()
    assert (seqs(fake_store), emit.returned) == (list(range(1000)), [True] * 1000)
    sample = next(e for e in fake_store.events.values() if e.data["payload"]["seq"] == 3)
    assert (sample.data["topic"], sample.data["qos"], sample.data["retain"], sample.subject) == (
        f"{prefix}/dev3/temp", 1, False, f"{prefix}/dev3/temp")


async def test_messages_published_while_stopped_arrive_after_restart(
        mqtt_broker: tuple[str, int], fake_store: FakeStore) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(mqtt_broker, tg, emit, [f"{prefix}/#"], f"c-{prefix}")
        await feed.start(emit)
        await asyncio.to_thread(publish, mqtt_broker, [(f"{prefix}/a", {"seq": i}) for i in range(10)])
        await wait_until(lambda: len(emit.returned) == 10)
        await feed.stop()
        await asyncio.to_thread(publish, mqtt_broker, [(f"{prefix}/a", {"seq": i}) for i in range(10, 110)])
        again = feed_for(mqtt_broker, tg, emit, [f"{prefix}/#"], f"c-{prefix}")  # same client id: same session
        await again.start(emit)
        await wait_until(lambda: emit.returned.count(True) >= 110)
        await again.stop()
    # A message stored just before stop() may not have been acknowledged yet: the broker sends it
    # again and the store refuses the duplicate (False). Each message is stored exactly once.
    assert (seqs(fake_store), emit.returned.count(True)) == (list(range(110)), 110)


async def test_unstored_messages_are_not_acknowledged_and_come_back(
        mqtt_broker: tuple[str, int], fake_store: FakeStore) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    stuck = asyncio.Event()

    async def never_durable(event: TriggerEvent, cursor: tuple[str, str] | None = None) -> bool:
        stuck.set()
        await asyncio.Event().wait()  # the store never answers: nothing may be acknowledged
        return True

    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(mqtt_broker, tg, emit, [f"{prefix}/#"], f"c-{prefix}")
        await feed.start(never_durable)  # type: ignore[arg-type]
        await asyncio.to_thread(publish, mqtt_broker, [(f"{prefix}/a", {"seq": i}) for i in range(5)])
        await asyncio.wait_for(stuck.wait(), 30)
        await feed.stop()
        again = feed_for(mqtt_broker, tg, emit, [f"{prefix}/#"], f"c-{prefix}")
        await again.start(emit)
        await wait_until(lambda: len(emit.returned) >= 5)
        await again.stop()
    assert (seqs(fake_store), emit.returned) == (list(range(5)), [True] * 5)


async def test_shared_subscription_splits_messages_without_loss_or_duplicates(
        mqtt_broker: tuple[str, int], fake_store: FakeStore) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    emits = [StoreEmit(fake_store, TRIGGER), StoreEmit(fake_store, TRIGGER)]
    async with asyncio.TaskGroup() as tg:
        feeds = [feed_for(mqtt_broker, tg, e, [f"{prefix}/+"], f"c-{prefix}-{i}", shareGroup="hub")
                 for i, e in enumerate(emits)]
        for feed, emit in zip(feeds, emits):
            await feed.start(emit)
        await asyncio.to_thread(publish, mqtt_broker, [(f"{prefix}/d{i % 4}", {"seq": i}) for i in range(400)])
        await wait_until(lambda: len(emits[0].returned) + len(emits[1].returned) >= 400)
        for feed in feeds:
            await feed.stop()
    assert seqs(fake_store) == list(range(400))
    assert emits[0].returned + emits[1].returned == [True] * 400
    assert len(emits[0].returned) > 0 and len(emits[1].returned) > 0


async def test_retained_state_fires_once_across_resubscribes_or_is_ignored(
        mqtt_broker: tuple[str, int], fake_store: FakeStore) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"

    def retain() -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{prefix}")
        client.connect(*mqtt_broker)
        client.loop_start()
        client.publish(f"{prefix}/state", json.dumps({"seq": 0}), qos=1, retain=True).wait_for_publish(30)
        client.disconnect()
        client.loop_stop()

    await asyncio.to_thread(retain)
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        for i in range(2):  # two fresh sessions: each is sent the retained message
            feed = feed_for(mqtt_broker, tg, emit, [f"{prefix}/#"], f"c-{prefix}-{i}")
            await feed.start(emit)
            await wait_until(lambda: len(emit.returned) == i + 1)
            await feed.stop()
        ignoring = feed_for(mqtt_broker, tg, emit, [f"{prefix}/#"], f"c-{prefix}-x", retained="ignore")
        await ignoring.start(emit)
        await asyncio.to_thread(publish, mqtt_broker, [(f"{prefix}/live", {"seq": 1})])
        await wait_until(lambda: len(emit.returned) == 3)
        await ignoring.stop()
    assert emit.returned == [True, False, True]
    assert [(e.data["topic"], e.data["retain"]) for e in fake_store.events.values()] == [
        (f"{prefix}/state", True), (f"{prefix}/live", False)]


async def test_create_through_the_manager_fails_cleanly_when_the_broker_is_absent(fake_store: FakeStore) -> None:
    from triggerhub.cli.feed_kinds import FEED_KINDS
    from triggerhub.engine.feed_manager import FeedManager
    from triggerhub.feeds.mqtt import FEED_KIND as MQTT_KIND
    from triggerhub.errors import BadRequest
    from triggerhub.store.base import Acceptance

    async def fire(event: TriggerEvent, cursor: tuple[str, str] | None) -> bool:
        return await fake_store.accept(Acceptance(event=event, cursor=cursor))

    async with asyncio.TaskGroup() as tg:
        manager = FeedManager(fake_store, fire, kinds=FEED_KINDS)
        await manager.start(tg)
        with pytest.raises(BadRequest) as caught:
            await manager.lifecycle("guest", "k", MQTT_KIND.fqn, {"lifecycleEvent": "CREATE", "triggerName": "/guest/s",
                                                         "url": "mqtt://127.0.0.1:1", "topics": "a/#"})
    assert caught.value.message.startswith("feed /whisk.system/mqtt/subscribe for trigger '/guest/s' could not "
                                           "start: MQTT broker mqtt://127.0.0.1:1 did not accept a connection")
    assert fake_store.feeds == {}


async def test_a_refused_message_pauses_the_feed_unacknowledged_and_arrives_after_unpause(
        mqtt_broker: tuple[str, int], fake_store: FakeStore) -> None:
    from triggerhub.cli.feed_kinds import FEED_KINDS
    from triggerhub.engine.feed_manager import FeedManager
    from triggerhub.feeds.mqtt import FEED_KIND as MQTT_KIND
    from triggerhub.errors import NotFound
    from triggerhub.store.base import Acceptance

    prefix = f"t-{uuid.uuid4().hex[:8]}"
    trigger = f"/guest/{prefix}"
    reason = f"trigger {trigger} does not exist; delete its feed or recreate the trigger"
    refusals = [NotFound(reason)]

    async def fire(event: TriggerEvent, cursor: tuple[str, str] | None) -> bool:
        if refusals:
            raise refusals.pop()
        return await fake_store.accept(Acceptance(event=event, cursor=cursor))

    def call(event: str, **params: object) -> dict[str, object]:
        return {"lifecycleEvent": event, "triggerName": trigger, **params}

    async with asyncio.TaskGroup() as tg:
        manager = FeedManager(fake_store, fire, kinds=FEED_KINDS)
        await manager.start(tg)
        await manager.lifecycle("guest", "k", MQTT_KIND.fqn, call(
            "CREATE", url=f"mqtt://{mqtt_broker[0]}:{mqtt_broker[1]}", topics=f"{prefix}/#", clientId=f"c-{prefix}"))
        await asyncio.to_thread(publish, mqtt_broker, [(f"{prefix}/a", {"seq": 1})])
        await wait_until(lambda: fake_store.feeds[trigger].status == "paused")
        read = await manager.lifecycle("guest", "k", MQTT_KIND.fqn, call("READ"))
        assert (read["status"]["active"], read["status"]["reason"], fake_store.events) == (False, reason, {})
        await manager.lifecycle("guest", "k", MQTT_KIND.fqn, call("UNPAUSE"))  # the broker redelivers it
        await wait_until(lambda: len(fake_store.events) == 1)
        await manager.lifecycle("guest", "k", MQTT_KIND.fqn, call("DELETE"))
    assert (seqs(fake_store), refusals) == ([1], [])
