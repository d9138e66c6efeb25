"""Kafka topic feed against the real broker: every record exactly once across a stop, poison
records dead-lettered without blocking their partition, batching limits, encodings, patterns.

Each test makes its own topics (unique names), so tests never see each other's records; they all
share this module's prefix, whose topics are deleted when the module is done.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.plugins.feeds import FakeStore, StoreEmit
from tests.plugins.services import run_in_thread
from tests.plugins.waiting import wait_quiet
from triggerhub.bus.topics import delete_topics
from triggerhub.clock import SYSTEM_CLOCK
from triggerhub.config import KafkaConfig
from triggerhub.errors import BadRequest, FeedError
from triggerhub.feeds.kafka import KafkaFeed, parse_kafka_config, read_dead_letters

pytestmark = pytest.mark.kafka
TRIGGER = "/guest/orders"
QUIET_S = 1.0  # no new event for this long, with every partition's stored offset at its end, means idle


PREFIX = f"th-test-{secrets.token_hex(4)}."  # of every topic and group this module makes


def unique(prefix: str) -> str:
    return f"{PREFIX}{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module", autouse=True)
def topics_deleted_at_the_end(kafka_bootstrap: str) -> Iterator[None]:
    yield
    run_in_thread(lambda: delete_topics(KafkaConfig(bootstrap=kafka_bootstrap), prefix=PREFIX))


async def make_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    yield producer
    await producer.stop()


class Saver:
    """The hub's cursor writes without an event (FeedContext.save_cursor), into the FakeStore."""

    def __init__(self, store: FakeStore, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    async def __call__(self, key: str, value: str) -> None:
        self.store.cursors[f"{self.prefix}#{key}"] = value


def feed_for(bootstrap: str, tg: asyncio.TaskGroup, store: FakeStore, emit: StoreEmit,
             **params: object) -> KafkaFeed:
    config = parse_kafka_config({"brokers": [bootstrap], **params}, default_group=unique("group"))
    return KafkaFeed(config, trigger=emit.prefix, clock=SYSTEM_CLOCK, tasks=tg, load_cursor=emit.load,
                     save_cursor=Saver(store, emit.prefix))


def delivered(store: FakeStore) -> list[tuple[int, int]]:
    """(partition, offset) of every record in every stored batch, duplicates kept."""
    return [(m["partition"], m["offset"]) for e in store.events.values() for m in e.data["messages"]]  # type: ignore


async def wait_drained(store: FakeStore, prefix: str, topic: str, ends: dict[int, int], *,
                       timeout_s: float = 40.0) -> None:
    """Until every partition's stored offset reached its end and no event came for QUIET_S."""
    async def stored() -> int:
        return len(store.events)

    await wait_quiet(stored, lambda _: all(store.cursors.get(f"{prefix}#offset:{topic}:{p}") == str(end)
                                           for p, end in ends.items()),
                     quiet_s=QUIET_S, timeout_s=timeout_s, interval_s=0.05)


async def produce(producer: AIOKafkaProducer, topic: str, values: list[bytes], *, partitions: int) -> dict[int, int]:
    """Send values round-robin over the partitions; the end offset of each partition afterwards."""
    for i, value in enumerate(values):
        await producer.send(topic, value, key=f"k{i}".encode(), partition=i % partitions,
                            headers=[("source", b"test"), ("raw", b"\xff\x00")])
    await producer.flush()
    return {p: len(range(p, len(values), partitions)) for p in range(partitions)}


@pytest.mark.timeout(60)
async def test_ten_thousand_records_over_three_partitions_once_each_across_a_stop(
        kafka_bootstrap: str, producer: AIOKafkaProducer, fake_store: FakeStore) -> None:
    topic = unique("orders")
    await make_topic(kafka_bootstrap, topic, 3)
    values = [json.dumps({"n": i}).encode() for i in range(10_000)]
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        params = {"topics": [topic], "valueEncoding": "json", "maxBatchRecords": 200, "maxBatchWaitMs": 50}
        feed = feed_for(kafka_bootstrap, tg, fake_store, emit, **params)
        await feed.start(emit)
        sending = asyncio.create_task(produce(producer, topic, values, partitions=3))
        async with asyncio.timeout(30):
            while len(delivered(fake_store)) < 2_000:
                await asyncio.sleep(0.01)
        await feed.stop()  # mid-stream
        stopped_at = len(delivered(fake_store))
        ends = await sending
        assert stopped_at < 10_000
        restarted = KafkaFeed(feed._config, trigger=TRIGGER, clock=SYSTEM_CLOCK, tasks=tg,  # same group, same store
                              load_cursor=emit.load, save_cursor=Saver(fake_store, TRIGGER))
        await restarted.start(emit)
        await wait_drained(fake_store, TRIGGER, topic, ends)
        await restarted.stop()
    records = delivered(fake_store)
    assert len(records) == 10_000 and len(set(records)) == 10_000, "every record once, none twice"
    assert emit.returned == [True] * len(emit.returned)
    by_value = sorted(m["value"]["n"] for e in fake_store.events.values() for m in e.data["messages"])  # type: ignore
    assert by_value == list(range(10_000))
    assert all(len(e.data["messages"]) <= 200 for e in fake_store.events.values())  # type: ignore


async def test_poison_record_is_dead_lettered_and_the_records_after_it_arrive(
        kafka_bootstrap: str, producer: AIOKafkaProducer, fake_store: FakeStore) -> None:
    topic = unique("poison")
    await make_topic(kafka_bootstrap, topic, 1)
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(kafka_bootstrap, tg, fake_store, emit, topics=topic, valueEncoding="json",
                        maxBatchWaitMs=20)
        await feed.start(emit)
        ends = await produce(producer, topic, [b'{"n": 0}', b'{"n": 1', b'{"n": 2}'], partitions=1)
        await wait_drained(fake_store, TRIGGER, topic, ends)
        only_poison = await produce(producer, topic, [b"\xff\xfe"], partitions=1)  # a batch of poison alone
        await wait_drained(fake_store, TRIGGER, topic, {0: ends[0] + only_poison[0]})
        await feed.stop()
    assert [m["value"] for e in fake_store.events.values() for m in e.data["messages"]] == [  # type: ignore
        {"n": 0}, {"n": 2}]
    first = next(iter(fake_store.events.values())).data["messages"][0]  # type: ignore
    assert first == {"topic": topic, "partition": 0, "offset": 0, "key": "k0", "value": {"n": 0},
                     "headers": [{"key": "source", "value": "test"},
                                 {"key": "raw", "value": "/wA=", "encoding": "base64"}],
                     "timestamp": first["timestamp"]}
    letters = await read_dead_letters(emit.load)
    assert letters["count"] == 2
    recent = letters["recent"]
    assert isinstance(recent, list)
    assert [(d["topic"], d["partition"], d["offset"], d["error"]) for d in recent] == [  # type: ignore
        (topic, 0, 1, "value is not JSON (Expecting ',' delimiter: line 1 column 8 (char 7)); use valueEncoding "
                      "text or base64"),
        (topic, 0, 3, "value is not UTF-8 text ('utf-8' codec can't decode byte 0xff in position 0: invalid start "
                      "byte); use valueEncoding base64"),
    ]
    assert recent[0]["value"] == "eyJuIjogMQ==" and recent[0]["key"] == "azE="  # type: ignore


async def test_pattern_subscription_finds_a_topic_created_later_and_base64_encoding(
        kafka_bootstrap: str, producer: AIOKafkaProducer, fake_store: FakeStore) -> None:
    prefix = unique("sensors")
    await make_topic(kafka_bootstrap, f"{prefix}.a", 1)
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(kafka_bootstrap, tg, fake_store, emit, topics=[f"^{prefix}\\..*"],
                        keyEncoding="base64", valueEncoding="base64", maxBatchWaitMs=20)
        await feed.start(emit)
        await producer.send_and_wait(f"{prefix}.a", b"\x00\x01", key=b"\xff")
        await make_topic(kafka_bootstrap, f"{prefix}.b", 1)  # after the feed started: its first record counts
        await producer.send_and_wait(f"{prefix}.b", b"hello")
        await wait_drained(fake_store, TRIGGER, f"{prefix}.a", {0: 1})
        await wait_drained(fake_store, TRIGGER, f"{prefix}.b", {0: 1})
        await feed.stop()
    got = sorted((m["topic"], m["key"], m["value"]) for e in fake_store.events.values()  # type: ignore
                 for m in e.data["messages"])  # type: ignore
    assert got == [(f"{prefix}.a", "/w==", "AAE="), (f"{prefix}.b", None, "aGVsbG8=")]


async def test_records_sent_while_stopped_arrive_and_a_new_feed_starts_at_the_end(
        kafka_bootstrap: str, producer: AIOKafkaProducer, fake_store: FakeStore) -> None:
    topic = unique("resume")
    await make_topic(kafka_bootstrap, topic, 1)
    await produce(producer, topic, [b"before"], partitions=1)  # older than the feed: never delivered
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        feed = feed_for(kafka_bootstrap, tg, fake_store, emit, topics=topic, maxBatchWaitMs=20)
        await feed.start(emit)
        await feed.stop()
        await producer.send_and_wait(topic, b"while-stopped", partition=0)
        again = KafkaFeed(feed._config, trigger=TRIGGER, clock=SYSTEM_CLOCK, tasks=tg, load_cursor=emit.load,
                          save_cursor=Saver(fake_store, TRIGGER))
        await again.start(emit)
        await wait_drained(fake_store, TRIGGER, topic, {0: 2})
        await again.stop()
    assert [m["value"] for e in fake_store.events.values() for m in e.data["messages"]] == [  # type: ignore
        "while-stopped"]


async def test_bad_parameters_and_unreachable_brokers_are_clear_errors(fake_store: FakeStore) -> None:
    cases = [
        ({"brokers": "nohost", "topics": "t"}, "brokers parameter 'nohost' must list host:port addresses, "
                                               "like [\"127.0.0.1:9092\"]"),
        ({"brokers": ["h:1"]}, "You must supply a 'topic' parameter."),
        ({"brokers": ["h:1"], "topics": ["a b"]}, "topics parameter: 'a b' is not a Kafka topic name (letters, "
                                                  "digits, '.', '_', '-'); start a pattern with '^'"),
        ({"brokers": ["h:1"], "topics": ["^("]}, "topics parameter: pattern '^(' is not a valid regular expression "
                                                 "(missing ), unterminated subpattern at position 1)"),
        ({"brokers": ["h:1"], "topic": "t", "isJSONData": True, "isBinaryValue": True},
         "isJSONData and isBinaryValue cannot both be enabled."),
        ({"brokers": ["h:1"], "topics": "t", "maxBatchRecords": 0},
         "maxBatchRecords parameter '0' must be an integer from 1 to 10000"),
        ({"brokers": ["h:1"], "topics": "t", "valueEncoding": "avro"},
         "valueEncoding parameter 'avro' must be one of json, text, base64"),
    ]
    for params, message in cases:
        with pytest.raises(BadRequest) as refused:
            parse_kafka_config(params, default_group="g")
        assert refused.value.message == message
    legacy = parse_kafka_config({"brokers": "h:1,h:2", "topic": "t", "isJSONData": True, "isBinaryKey": True},
                                default_group="g")
    assert legacy.to_json() == {"brokers": ["h:1", "h:2"], "topics": ["t"], "groupId": "g", "maxBatchRecords": 100,
                                "maxBatchWaitMs": 1000, "keyEncoding": "base64", "valueEncoding": "json"}
    emit = StoreEmit(fake_store, TRIGGER)
    async with asyncio.TaskGroup() as tg:
        config = parse_kafka_config({"brokers": ["127.0.0.1:1"], "topics": "t"}, default_group="g")
        feed = KafkaFeed(config, trigger=TRIGGER, clock=SYSTEM_CLOCK, tasks=tg, load_cursor=emit.load,
                         save_cursor=Saver(fake_store, TRIGGER))
        with pytest.raises(FeedError) as unreachable:
            await feed.start(emit)
    assert str(unreachable.value).startswith("Kafka at 127.0.0.1:1 did not answer (")
    assert str(unreachable.value).endswith("); check the brokers parameter and that the brokers run")

