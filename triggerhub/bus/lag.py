"""Consumer lag of distributed mode's consumer groups: how many messages wait behind each group's
committed offsets, per topic. Read-only; used by `GET /api/v1/status` on a controller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from triggerhub.config import KafkaConfig
from triggerhub.errors import BusError


@dataclass(frozen=True, slots=True)
class GroupLag:
    topic: str
    lag: int  # end offsets minus committed offsets, summed over partitions (uncommitted count from 0)
    partitions: int


async def consumer_lag(config: KafkaConfig, groups: Mapping[str, str]) -> dict[str, GroupLag]:
    """group id -> its lag on the topic it consumes (`groups` maps group id -> topic)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap, client_id="triggerhub-status")
    consumer = AIOKafkaConsumer(bootstrap_servers=config.bootstrap, client_id="triggerhub-status",
                                enable_auto_commit=False)
    try:
        await admin.start()
        await consumer.start()
        described = await admin.describe_topics(sorted(set(groups.values())))
        partitions = {doc["topic"]: [TopicPartition(doc["topic"], p["partition"]) for p in doc["partitions"]]
                      for doc in described}
        lags: dict[str, GroupLag] = {}
        for group, topic in groups.items():
            owned = partitions.get(topic, [])
            committed = await admin.list_consumer_group_offsets(group, partitions=owned)
            ends = await consumer.end_offsets(owned) if owned else {}
            lag = sum(max(0, ends[tp] - max(0, committed[tp].offset if tp in committed else 0)) for tp in owned)
            lags[group] = GroupLag(topic, lag, len(owned))
        return lags
    except KafkaError as exc:
        raise BusError(f"cannot read consumer lag from Kafka at {config.bootstrap} ({exc})") from exc
    finally:
        await consumer.stop()
        await admin.close()
