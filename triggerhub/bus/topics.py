"""Topic names of distributed mode and their creation on the broker.

Names carry a configurable prefix so several hubs (or test runs) share one broker. Topics are
created before any consumer subscribes: a consumer group that subscribes to a missing topic gets
no partitions until the next rebalance. Creating returns before the broker's metadata shows the
new topic, so `ensure_topics` waits until every topic is listed with a leader for each partition.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.config import KafkaConfig
from triggerhub.errors import BusError

log = logging.getLogger(__name__)

TOPICS_READY_TIMEOUT_S = 30.0
TOPICS_READY_POLL_S = 0.05

Describe = Callable[[list[str]], Awaitable[list[dict[str, Any]]]]
"""`AIOKafkaAdminClient.describe_topics`: the broker's metadata of the named topics."""


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str

    @property
    def trigger_events(self) -> str:
        """Fired events, keyed by event id so one trigger's events spread over the partitions
        (or by the trigger's ordering key, whose events then share a partition)."""
        return f"{self.prefix}trigger-events"

    @property
    def invocations(self) -> str:
        """Accepted invocations, keyed by activation id; one consumer group of all invokers."""
        return f"{self.prefix}invocations"

    @property
    def feed_invocations(self) -> str:
        """Invocations of built-in feed actions (the feed lifecycle), run by the `feeds` process."""
        return f"{self.prefix}feed-invocations"

    @property
    def health(self) -> str:
        """Invoker heartbeats, read by every controller."""
        return f"{self.prefix}health"

    @property
    def derive_keys(self) -> str:
        """Source events of derived triggers (and their deadline ticks), keyed by (derived trigger,
        key): one key's state lives in one partition of the workers' table (engine/derive_table.py)."""
        return f"{self.prefix}derive-keys"

    def completed(self, controller_id: int) -> str:
        """Finished records for the blocking callers of one controller (OpenWhisk `completed<N>`)."""
        return f"{self.prefix}completed{controller_id}"

    def app_id(self, role: str) -> str:
        """Consumer-group id of a role (`worker`, `invokers`)."""
        return f"{self.prefix}{role}"


async def ensure_topics(config: KafkaConfig, names: Iterable[str]) -> dict[str, int]:
    """Create each topic with `config.partitions` partitions unless it exists already; returns
    each topic's partition count as the broker reports it."""
    wanted = sorted(set(names))
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap, client_id="triggerhub-admin")
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, config.partitions, 1) for name in wanted if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created it between the listing and now
            log.info("created topics %s with %d partitions", [t.name for t in missing], config.partitions)
        return await wait_topics_ready(admin.describe_topics, wanted, bootstrap=config.bootstrap)
    except KafkaError as exc:
        raise BusError(f"cannot create topics {wanted} on Kafka at {config.bootstrap} ({exc}); "
                       "check TRIGGERHUB_KAFKA_BOOTSTRAP and that the broker runs") from exc
    finally:
        await admin.close()


async def delete_topics(config: KafkaConfig, *, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (a deployment's own, and those its
    worker's tables made under it) and return their names: a broker keeps every topic and each
    client's metadata refresh costs CPU per topic, so a deployment that goes away takes its topics."""
    if not prefix:
        raise BusError("deleting topics needs a topic prefix; an empty one would name every topic on the broker")
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap, client_id="triggerhub-admin")
    try:
        await admin.start()
        doomed = sorted(name for name in await admin.list_topics() if name.startswith(prefix))
        if doomed:
            response = await admin.delete_topics(doomed)
            failed = {name: code for name, code, *_ in response.topic_error_codes
                      if code not in (0, UnknownTopicOrPartitionError.errno)}  # gone already is fine
            if failed:
                raise BusError(f"Kafka at {config.bootstrap} refused to delete topics {failed} (topic: error code)")
            log.info("deleted %d topics with prefix %r", len(doomed), prefix)
        return doomed
    except KafkaError as exc:
        raise BusError(f"cannot delete the topics with prefix {prefix!r} on Kafka at {config.bootstrap} ({exc}); "
                       "check TRIGGERHUB_KAFKA_BOOTSTRAP and that the broker runs") from exc
    finally:
        await admin.close()


def ready_partition_counts(described: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Topic -> partition count, for each described topic the broker can serve: listed without an
    error, with at least one partition, each with a leader."""
    return {doc["topic"]: len(doc["partitions"]) for doc in described
            if doc["error_code"] == 0 and doc["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in doc["partitions"])}


async def wait_topics_ready(describe: Describe, names: list[str], *, bootstrap: str,
                            timeout_s: float = TOPICS_READY_TIMEOUT_S, clock: Clock = SYSTEM_CLOCK) -> dict[str, int]:
    """Each of `names` -> its partition count, once the metadata shows every one of them ready.

    Right after CreateTopics the broker may still describe a new topic as unknown, with no
    partitions (UNKNOWN_TOPIC_OR_PARTITION): 0.1-3 s on a busy single-node broker. A reader that
    assigned "all partitions" of it then would read nothing, ever (bus/tail.py). BusError after
    `timeout_s`."""
    deadline_s = clock.monotonic_s() + timeout_s
    while True:
        counts = ready_partition_counts(await describe(names))
        missing = [name for name in names if name not in counts]
        if not missing:
            return {name: counts[name] for name in names}
        if clock.monotonic_s() >= deadline_s:
            raise BusError(f"topics {missing} have no partitions with a leader on Kafka at {bootstrap} "
                           f"{timeout_s:.0f} s after they were created; see the broker's log")
        await clock.sleep(TOPICS_READY_POLL_S)
