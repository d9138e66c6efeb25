"""Topics on the real broker: a deployment's topics are deleted by prefix when it goes away."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.plugins.distributed import Deployment, deployment_env, started
from tests.plugins.services import create_database, drop_database, run_in_thread
from triggerhub.bus.topics import Topics, delete_topics, ensure_topics
from triggerhub.config import KafkaConfig
from triggerhub.errors import BusError

pytestmark = [pytest.mark.kafka]


async def topics_named(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(name for name in await admin.list_topics() if name.startswith(prefix))
    finally:
        await admin.close()


async def test_deleting_by_prefix_removes_that_prefix_s_topics_and_no_other(kafka_bootstrap: str) -> None:
    mine = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=f"th-test-{secrets.token_hex(4)}.")
    # Starts with the same characters but not with the whole prefix (its dot).
    neighbour = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=f"{mine.topic_prefix[:-1]}-next.")
    names = [Topics(mine.topic_prefix).invocations, Topics(mine.topic_prefix).health, f"{mine.topic_prefix}x-changelog"]
    await ensure_topics(mine, names)
    await ensure_topics(neighbour, [Topics(neighbour.topic_prefix).invocations])
    try:
        assert await delete_topics(mine, prefix=mine.topic_prefix) == sorted(names)
        assert await topics_named(kafka_bootstrap, mine.topic_prefix) == []
        assert await topics_named(kafka_bootstrap, neighbour.topic_prefix) == [Topics(neighbour.topic_prefix).invocations]
        assert await delete_topics(mine, prefix=mine.topic_prefix) == []  # nothing left: nothing to do
    finally:
        await delete_topics(neighbour, prefix=neighbour.topic_prefix)


async def test_deleting_with_an_empty_prefix_is_refused(kafka_bootstrap: str) -> None:
    with pytest.raises(BusError) as refused:
        await delete_topics(KafkaConfig(bootstrap=kafka_bootstrap), prefix="")
    assert str(refused.value) == ("deleting topics needs a topic prefix; an empty one would name every topic on the "
                                  "broker")


def test_a_stopped_test_deployment_leaves_no_topic_behind(pg_admin_url: str, kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    """The `deployment` fixtures' teardown: after a controller made its topics, none is left."""
    url = create_database(pg_admin_url, "th_topics")
    env = deployment_env(url, kafka_bootstrap, tmp_path / "home")
    prefix = env["TRIGGERHUB_KAFKA_TOPIC_PREFIX"]
    try:
        with started(Deployment(tmp_path, env)) as deployment:
            deployment.start("controller")
            made = run_in_thread(lambda: topics_named(kafka_bootstrap, prefix))
            assert Topics(prefix).invocations in made and Topics(prefix).health in made
        assert run_in_thread(lambda: topics_named(kafka_bootstrap, prefix)) == []
    finally:
        drop_database(pg_admin_url, url)
