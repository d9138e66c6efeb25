"""Kafka topic feed (aiokafka): a user's topics, consumed in batches, one event per batch.

Each trigger has its own consumer group. Records are gathered for up to `maxBatchWaitMs` after
the first one (at most `maxBatchRecords`); each partition's share becomes one event
`{"messages": [{topic, partition, offset, key, value, headers, timestamp}, ...]}` (OpenWhisk's
Kafka feed shape), stored together with the partition's next offset as the feed's cursor. The hub's
cursor is where a partition resumes after a restart; offsets are committed to Kafka only after the
events are stored (for lag monitoring and other tools). A record whose key or value cannot be
decoded (a poison record) is dead-lettered: stored with its topic, partition, offset and error
under the feed's `deadLetters` cursor, which READ shows, and the partition moves on past it.
aiokafka (about 3 MiB) is imported when the first Kafka feed starts, not with the hub.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from triggerhub.clock import Clock
from triggerhub.errors import ApiError, BadRequest, FeedError
from triggerhub.feeds.cursor import CursorEmit, CursorLoader, CursorSaver
from triggerhub.feeds.kind import BuiltinFeed, FeedContext, FeedKind, ParseContext
from triggerhub.feeds.lifecycle import FeedTask, ignore_failure
from triggerhub.model import JSON, TriggerEvent
from triggerhub.observe.trace import first_valid

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

log = logging.getLogger(__name__)

EVENT_TYPE = "triggerhub.feed.kafka.batch"
DEAD_LETTERS_KEY = "deadLetters"
STARTED_KEY = "startedMs"
DEAD_LETTERS_KEPT = 100  # the most recent ones READ lists; the count covers all
DEAD_VALUE_BYTES = 4096  # how much of a poison record's raw value is kept (base64)
MAX_BATCH_RECORDS = 10_000
MAX_BATCH_WAIT_MS = 60_000
METADATA_REFRESH_MS = 5_000  # how soon a topic created later is found by a pattern subscription
START_TIMEOUT_S = 30.0  # start() waits this long for the first partition assignment
RETRY_S = 1.0
_BROKER_RE = re.compile(r"^[A-Za-z0-9._-]+:\d{1,5}$")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class Encoding(StrEnum):
    JSON = "json"
    TEXT = "text"
    BASE64 = "base64"


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    brokers: tuple[str, ...]
    topics: tuple[str, ...]  # names, or regular expressions when they start with "^"
    group_id: str
    max_batch_records: int = 100
    max_batch_wait_ms: int = 1000
    key_encoding: Encoding = Encoding.TEXT
    value_encoding: Encoding = Encoding.TEXT

    @property
    def pattern(self) -> str | None:
        """One regular expression for the whole subscription when any entry is a pattern."""
        if not any(t.startswith("^") for t in self.topics):
            return None
        parts = [t[1:] if t.startswith("^") else re.escape(t) for t in self.topics]
        return "^(?:" + "|".join(f"(?:{p.removesuffix('$')})" for p in parts) + ")$"

    def to_json(self) -> dict[str, JSON]:
        return {"brokers": list(self.brokers), "topics": list(self.topics), "groupId": self.group_id,
                "maxBatchRecords": self.max_batch_records, "maxBatchWaitMs": self.max_batch_wait_ms,
                "keyEncoding": str(self.key_encoding), "valueEncoding": str(self.value_encoding)}


def default_group_id(trigger: str, created_ms: int) -> str:
    """One group per trigger and per CREATE: a trigger deleted and created again starts afresh."""
    return f"triggerhub-{hashlib.sha256(trigger.encode()).hexdigest()[:12]}-{created_ms}"


def parse_kafka_config(params: Mapping[str, JSON], *, default_group: str) -> KafkaConfig:
    """Validate CREATE/UPDATE parameters. OpenWhisk's `topic`, `isJSONData`, `isBinaryKey` and
    `isBinaryValue` are accepted too and mapped onto `topics` and the encodings."""
    brokers = _names(params.get("brokers"))
    if not brokers or not all(_BROKER_RE.match(b) for b in brokers):
        raise BadRequest(f"brokers parameter '{params.get('brokers')}' must list host:port addresses, "
                         "like [\"127.0.0.1:9092\"]")
    topics = _names(params.get("topics", params.get("topic")))
    if not topics:
        raise BadRequest("You must supply a 'topic' parameter.")
    for topic in topics:
        if topic.startswith("^"):
            try:
                re.compile(topic)
            except re.error as exc:
                raise BadRequest(f"topics parameter: pattern '{topic}' is not a valid regular expression ({exc})"
                                 ) from None
        elif not _TOPIC_RE.match(topic):
            raise BadRequest(f"topics parameter: '{topic}' is not a Kafka topic name (letters, digits, '.', '_', "
                             "'-'); start a pattern with '^'")
    group = params.get("groupId", default_group)
    if not isinstance(group, str) or not group.strip():
        raise BadRequest(f"groupId parameter '{group}' must be a non-empty string")
    if params.get("isJSONData") is True and params.get("isBinaryValue") is True:
        raise BadRequest("isJSONData and isBinaryValue cannot both be enabled.")
    legacy_value = (Encoding.JSON if params.get("isJSONData") is True
                    else Encoding.BASE64 if params.get("isBinaryValue") is True else Encoding.TEXT)
    legacy_key = Encoding.BASE64 if params.get("isBinaryKey") is True else Encoding.TEXT
    return KafkaConfig(
        brokers=brokers, topics=topics, group_id=group,
        max_batch_records=_bounded(params, "maxBatchRecords", 100, MAX_BATCH_RECORDS),
        max_batch_wait_ms=_bounded(params, "maxBatchWaitMs", 1000, MAX_BATCH_WAIT_MS),
        key_encoding=_encoding(params, "keyEncoding", legacy_key),
        value_encoding=_encoding(params, "valueEncoding", legacy_value))


def _names(value: JSON) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(str(item).strip() for item in items if str(item).strip())


def _bounded(params: Mapping[str, JSON], key: str, default: int, most: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise BadRequest(f"{key} parameter '{value}' must be an integer from 1 to {most}")
    return value


def _encoding(params: Mapping[str, JSON], key: str, default: Encoding) -> Encoding:
    value = params.get(key, str(default))
    if value not in list(Encoding):
        raise BadRequest(f"{key} parameter '{value}' must be one of {', '.join(Encoding)}")
    return Encoding(str(value))


# --------------------------------------------------------------------------- decoding


class PoisonRecord(ValueError):
    """A record's key or value does not decode as the feed's encoding says."""


def decode(raw: bytes | None, encoding: Encoding, what: str) -> JSON:
    if raw is None:
        return None
    if encoding is Encoding.BASE64:
        return base64.b64encode(raw).decode("ascii")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PoisonRecord(f"{what} is not UTF-8 text ({exc}); use {what}Encoding base64") from None
    if encoding is Encoding.TEXT:
        return text
    try:
        decoded: JSON = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PoisonRecord(f"{what} is not JSON ({exc}); use {what}Encoding text or base64") from None
    return decoded


def _header(name: str, raw: bytes | None) -> dict[str, JSON]:
    try:
        return {"key": name, "value": raw.decode("utf-8") if raw is not None else None}
    except UnicodeDecodeError:
        return {"key": name, "value": base64.b64encode(raw or b"").decode("ascii"), "encoding": "base64"}


def message(record: ConsumerRecord[bytes, bytes], config: KafkaConfig) -> dict[str, JSON]:
    """The event's entry for one record, or PoisonRecord."""
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset,
            "key": decode(record.key, config.key_encoding, "key"),
            "value": decode(record.value, config.value_encoding, "value"),
            "headers": [_header(k, v) for k, v in (record.headers or ())], "timestamp": record.timestamp}


@dataclass(frozen=True, slots=True)
class DeadLetters:
    """The feed's dead letters as stored: a count, the newest DEAD_LETTERS_KEPT, and per partition
    the highest offset dead-lettered (so re-reading a batch after a crash never counts one twice)."""

    count: int = 0
    recent: tuple[dict[str, JSON], ...] = ()
    marks: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"count": self.count, "recent": list(self.recent), "marks": self.marks})

    @staticmethod
    def load(stored: str | None) -> DeadLetters:
        state = json.loads(stored) if stored else {}
        return DeadLetters(int(state.get("count", 0)), tuple(state.get("recent", ())), dict(state.get("marks", {})))

    def adding(self, letters: Sequence[dict[str, JSON]]) -> DeadLetters:
        marks = dict(self.marks)
        fresh = []
        for letter in letters:
            mark = f"{letter['topic']}:{letter['partition']}"
            offset = int(str(letter["offset"]))
            if offset > marks.get(mark, -1):
                marks[mark] = offset
                fresh.append(letter)
        return DeadLetters(self.count + len(fresh), (*self.recent, *fresh)[-DEAD_LETTERS_KEPT:], marks)


def dead_letter(record: ConsumerRecord[bytes, bytes], error: str) -> dict[str, JSON]:
    raw = record.value or b""
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset, "error": error,
            "timestamp": record.timestamp, "key": base64.b64encode(record.key).decode("ascii") if record.key else None,
            "value": base64.b64encode(raw[:DEAD_VALUE_BYTES]).decode("ascii"), "valueBytes": len(raw)}


async def read_dead_letters(load_cursor: CursorLoader) -> dict[str, JSON]:
    """What READ shows of a Kafka feed's dead letters."""
    letters = DeadLetters.load(await load_cursor(DEAD_LETTERS_KEY))
    return {"count": letters.count, "recent": list(letters.recent)}


# --------------------------------------------------------------------------- consuming


def _offset_key(tp: TopicPartition) -> str:
    return f"offset:{tp.topic}:{tp.partition}"


def _positions(feed: KafkaFeed) -> Any:
    """A listener that, on assignment, moves each partition to the hub's stored offset. A partition
    never seen before starts at its first record stamped at or after the feed's creation (so records
    of a topic created later, or sent while the group was joining, are not missed; older ones are not
    replayed: OpenWhisk's feed starts at the end), pinned at once so a restart resumes there."""
    from aiokafka import ConsumerRebalanceListener

    class Positions(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            return None

        async def on_partitions_assigned(self, assigned: Any) -> None:
            await feed.position_partitions(sorted(assigned))

    return Positions()


class KafkaFeed:
    def __init__(self, config: KafkaConfig, *, trigger: str, clock: Clock, tasks: asyncio.TaskGroup,
                 load_cursor: CursorLoader, save_cursor: CursorSaver,
                 on_failed: Callable[[str], None] = ignore_failure) -> None:
        self._config = config
        self._run = FeedTask("kafka", trigger=trigger, tasks=tasks, clock=clock, on_failed=on_failed, logger=log)
        self._clock = clock
        self._load_cursor = load_cursor
        self._save_cursor = save_cursor
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned = asyncio.Event()
        self._dead = DeadLetters()
        self._started_ms = 0  # when this feed first started: records stamped earlier are not delivered
        self._source = f"kafka://{','.join(config.brokers)}"
        self._id_prefix = "kafka:" + hashlib.sha256(f"{trigger}\0{config.group_id}".encode()).hexdigest()[:12]

    async def start(self, emit: CursorEmit) -> None:
        """Join the group; returns once the first assignment is positioned (or START_TIMEOUT_S passed)."""
        if self._run.running:
            return
        self._dead = DeadLetters.load(await self._load_cursor(DEAD_LETTERS_KEY))
        started = await self._load_cursor(STARTED_KEY)
        if started is None:
            started = str(self._clock.now_ms())
            await self._save_cursor(STARTED_KEY, started)
        self._started_ms = int(started)
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError
        consumer = AIOKafkaConsumer(
            bootstrap_servers=list(self._config.brokers), group_id=self._config.group_id,
            client_id=self._config.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest",  # only when a stored offset is no longer retained
            metadata_max_age_ms=METADATA_REFRESH_MS, max_partition_fetch_bytes=1 << 20)
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise FeedError(f"Kafka at {','.join(self._config.brokers)} did not answer ({exc}); check the brokers "
                            "parameter and that the brokers run") from exc
        pattern = self._config.pattern
        if pattern is None:
            consumer.subscribe(topics=list(self._config.topics), listener=_positions(self))
        else:
            consumer.subscribe(pattern=pattern, listener=_positions(self))
        self._consumer = consumer
        await self._run.start(self._consume(consumer, emit))
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await self._assigned.wait()
        except TimeoutError:
            log.warning("%s: no partition assignment within %s s; it keeps trying", self._run.label,
                        START_TIMEOUT_S)
        log.info("%s consuming %s as group %s", self._run.label, ",".join(self._config.topics),
                 self._config.group_id)

    async def stop(self) -> None:
        if await self._run.stop():
            log.info("%s stopped", self._run.label)

    async def position_partitions(self, assigned: Sequence[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        fresh = []
        for tp in assigned:
            stored = await self._load_cursor(_offset_key(tp))
            if stored is not None:
                consumer.seek(tp, int(stored))
            else:
                fresh.append(tp)
        if fresh:
            found = await consumer.offsets_for_times({tp: self._started_ms + 1 for tp in fresh})
            ends = await consumer.end_offsets(fresh)
            for tp in fresh:
                at = found.get(tp)
                offset = at.offset if at is not None else ends[tp]
                consumer.seek(tp, offset)
                await self._save_cursor(_offset_key(tp), str(offset))
        log.info("%s assigned %s", self._run.label,
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned) or "no partitions")
        self._assigned.set()

    async def _consume(self, consumer: AIOKafkaConsumer, emit: CursorEmit) -> None:
        from aiokafka.errors import KafkaError
        try:
            while True:
                try:
                    batch = await self._gather(consumer)
                    offsets = {}
                    for tp, records in batch.items():
                        await self._store(tp, records, emit)
                        offsets[tp] = records[-1].offset + 1
                    if offsets:
                        await self._commit(consumer, offsets)
                except ApiError as exc:  # refused for good: the partition's offset stays before the batch
                    self._run.refused(exc, "a batch")
                    return
                except KafkaError as exc:
                    log.warning("%s: %s; retrying in %s s", self._run.label, exc, RETRY_S)
                    await self._clock.sleep(RETRY_S)
        finally:
            self._consumer = None
            await consumer.stop()

    async def _gather(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """Up to maxBatchRecords, waiting at most maxBatchWaitMs after the first record arrived."""
        limit, wait_ms = self._config.max_batch_records, self._config.max_batch_wait_ms
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        got = await consumer.getmany(timeout_ms=wait_ms, max_records=limit)
        count = 0
        deadline_s = self._clock.monotonic_s() + wait_ms / 1000
        while got:
            for tp, records in got.items():
                # A rebalance during the gathering (a group member joined or was evicted) seeks the
                # partition back to its stored offset, the start of this batch: records already
                # here come again and are not added twice.
                kept = batch.setdefault(tp, [])
                after = kept[-1].offset if kept else -1
                fresh = [record for record in records if record.offset > after]
                kept.extend(fresh)
                count += len(fresh)
            remaining_ms = int((deadline_s - self._clock.monotonic_s()) * 1000)
            if count >= limit or remaining_ms <= 0:
                break
            got = await consumer.getmany(timeout_ms=remaining_ms, max_records=limit - count)
        return batch

    async def _store(self, tp: TopicPartition, records: Sequence[ConsumerRecord[bytes, bytes]],
                     emit: CursorEmit) -> None:
        """Dead letters first, then the event with the partition's next offset: a crash between the
        two re-reads the batch, and the dead letters' marks keep them from counting twice."""
        messages: list[JSON] = []
        letters = []
        for record in records:
            try:
                messages.append(message(record, self._config))
            except PoisonRecord as exc:
                letters.append(dead_letter(record, str(exc)))
                log.warning("%s dead-lettered %s[%d]@%d: %s", self._run.label, record.topic,
                            record.partition, record.offset, exc)
        cursor = (_offset_key(tp), str(records[-1].offset + 1))
        if letters:
            self._dead = self._dead.adding(letters)
            dead = self._dead.to_json()
            await self._run.store(f"storing dead letters of {tp.topic}[{tp.partition}]",
                                       lambda: self._save_cursor(DEAD_LETTERS_KEY, dead))
        if not messages:
            await self._run.store(f"storing the offset of {tp.topic}[{tp.partition}]",
                                       lambda: self._save_cursor(*cursor))
            return
        first = records[0]
        headers = {key: value for key, value in (first.headers or ())}
        event = TriggerEvent(
            id=f"{self._id_prefix}:{tp.topic}:{tp.partition}:{first.offset}", source=self._source, type=EVENT_TYPE,
            trigger=self._run.fqn, subject=f"{tp.topic}/{tp.partition}", time_ms=first.timestamp,
            data={"messages": messages},
            origin={"topic": tp.topic, "partition": tp.partition, "offset": first.offset, "count": len(messages)},
            traceparent=first_valid(*(_text_header(headers.get(name)) for name in ("traceparent", "ce_traceparent"))))
        await self._run.store(f"storing the batch {event.id}", lambda: emit(event, cursor=cursor))

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Mirror the stored offsets to Kafka; a failure (e.g. during a rebalance) loses nothing,
        because partitions resume from the hub's stored offsets."""
        from aiokafka.errors import KafkaError
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            log.info("%s: offset commit skipped (%s); the stored offsets stay authoritative",
                     self._run.label, exc)



# --------------------------------------------------------------------------- the feed kind


def _parse(params: Mapping[str, JSON], ctx: ParseContext) -> dict[str, JSON]:
    return parse_kafka_config(params, default_group=default_group_id(ctx.trigger, ctx.now_ms)).to_json()


def _build(config: Mapping[str, JSON], ctx: FeedContext) -> KafkaFeed:
    parsed = parse_kafka_config(config, default_group=default_group_id(ctx.trigger, ctx.not_before_ms))
    return KafkaFeed(parsed, trigger=ctx.trigger, clock=ctx.clock, tasks=ctx.tasks, load_cursor=ctx.load_cursor,
                     save_cursor=ctx.save_cursor, on_failed=ctx.on_failed)


async def _report(_config: Mapping[str, JSON], load_cursor: CursorLoader) -> dict[str, JSON]:
    letters = await read_dead_letters(load_cursor)
    return {"deadLetters": letters, "metrics": {"deadLettered": letters["count"]}}


FEED_KIND = FeedKind(
    catalogue=BuiltinFeed("kafka", "consume", "Fire a trigger for every batch of records on Kafka topics "
                          "(names or ^patterns)", ("brokers", "topics", "groupId", "maxBatchRecords", "maxBatchWaitMs",
                                                  "keyEncoding", "valueEncoding")),
    parse=_parse, build=_build, report=_report,
)


def _text_header(value: bytes | None) -> str | None:
    """A header value as text, for the trace context a producer may have set; None if not UTF-8."""
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None
