"""Topic names of distributed mode and their creation on the broker.

Names carry a configurable prefix so several hubs (or test runs) share one broker. Topics are
created before any consumer subscribes: a consumer group that subscribes to a missing topic gets
no partitions until the next rebalance.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from triggerhub.config import KafkaConfig
from triggerhub.errors import BusError

log = logging.getLogger(__name__)


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
        described = await admin.describe_topics(wanted)
        return {doc["topic"]: len(doc["partitions"]) for doc in described if doc["topic"] in wanted}
    except KafkaError as exc:
        raise BusError(f"cannot create topics {wanted} on Kafka at {config.bootstrap} ({exc}); "
                       "check TRIGGERHUB_KAFKA_BOOTSTRAP and that the broker runs") from exc
    finally:
        await admin.close()
