"""Topics are ready only when the broker's metadata shows them: `wait_topics_ready` polls the
describe seam until every topic is listed with a leader for each partition (a topic created a
moment ago is described as unknown, with no partitions), and a Tail refuses a topic of none."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.clock import TestClock
from triggerhub.bus.tail import Tail
from triggerhub.bus.topics import TOPICS_READY_POLL_S, ready_partition_counts, wait_topics_ready
from triggerhub.config import KafkaConfig
from triggerhub.errors import BusError

UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5


def described(topic: str, *, error_code: int = 0, leaders: list[int] | None = None) -> dict[str, Any]:
    """One topic as AIOKafkaAdminClient.describe_topics answers it."""
    partitions = [{"error_code": LEADER_NOT_AVAILABLE if leader < 0 else 0, "partition": n, "leader": leader,
                   "replicas": [1], "isr": [1], "offline_replicas": []} for n, leader in enumerate(leaders or [])]
    return {"error_code": error_code, "topic": topic, "is_internal": False, "partitions": partitions}


class Broker:
    """The describe seam: answers each call with the next list of described topics (the last one
    again once they run out), and counts the calls."""

    def __init__(self, *answers: list[dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    async def describe(self, names: list[str]) -> list[dict[str, Any]]:
        self.calls.append(list(names))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_a_topic_is_ready_once_listed_without_error_with_a_leader_for_each_partition() -> None:
    counts = ready_partition_counts([
        described("new", error_code=UNKNOWN_TOPIC_OR_PARTITION),
        described("leaderless", leaders=[1, -1]),
        described("empty"),
        described("ready", leaders=[1, 1, 1, 1]),
    ])
    assert counts == {"ready": 4}


async def test_the_wait_lasts_until_the_metadata_shows_every_topic_created_a_moment_ago() -> None:
    clock = TestClock(0.0, autojump=True)
    broker = Broker(
        [described("a", error_code=UNKNOWN_TOPIC_OR_PARTITION), described("b", error_code=UNKNOWN_TOPIC_OR_PARTITION)],
        [described("a", leaders=[1, 1]), described("b", leaders=[1, -1])],
        [described("a", leaders=[1, 1]), described("b", leaders=[1, 1])],
    )
    counts = await wait_topics_ready(broker.describe, ["a", "b"], bootstrap="127.0.0.1:9092", clock=clock)
    assert counts == {"a": 2, "b": 2}
    assert broker.calls == [["a", "b"]] * 3
    assert clock.monotonic_s() == pytest.approx(2 * TOPICS_READY_POLL_S)


async def test_a_topic_that_never_gets_a_leader_is_a_bus_error_naming_it() -> None:
    clock = TestClock(0.0, autojump=True)
    broker = Broker([described("a", leaders=[1]), described("b", error_code=UNKNOWN_TOPIC_OR_PARTITION)])
    with pytest.raises(BusError) as raised:
        await wait_topics_ready(broker.describe, ["a", "b"], bootstrap="127.0.0.1:9092", timeout_s=2.0, clock=clock)
    assert str(raised.value) == ("topics ['b'] have no partitions with a leader on Kafka at 127.0.0.1:9092 "
                                 "2 s after they were created; see the broker's log")
    assert clock.monotonic_s() == pytest.approx(2.0)


async def ignore(topic: str, key: str, value: bytes) -> None:
    """A Tail handler for tails that are never read."""


@pytest.mark.parametrize("topics", [{"t.health": 0}, {"t.completed0": 4, "t.health": 0}])
def test_a_tail_of_a_topic_without_partitions_is_refused(topics: dict[str, int]) -> None:
    """It would read nothing, ever: the controller's blocking invokes answered 202 and its invokers
    stayed unseen when it was given the count of a topic the broker did not show yet."""
    with pytest.raises(BusError) as raised:
        Tail(KafkaConfig(bootstrap="127.0.0.1:9092"), topics, ignore, since_ms=0)
    assert str(raised.value) == ("cannot read topics ['t.health']: no partitions to read; take the counts "
                                 "from ensure_topics(), which waits until the broker shows them")
