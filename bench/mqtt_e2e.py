"""MQTT end to end through a running hub: publish -> stored trigger event -> stored action record.

    python bench/mqtt_e2e.py [--count 2000] [--broker 127.0.0.1:18830] [--runtime process|docker]

Starts `triggerhub up` (SQLite) in a child process, creates a trigger fed by
/whisk.system/mqtt/subscribe (QoS 1) and a rule to a warm noop action, publishes `count` QoS 1
messages over wildcard topics, and prints messages/s until all trigger events are stored and until
all action activation records are stored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedded import hub, invoke_ms, put_action  # noqa: E402  (bench scripts share their hub helper)


def publish_all(host: str, port: int, prefix: str, count: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-e2e-{prefix}")
    client.max_inflight_messages_set(100)
    client.connect(host, port)
    client.loop_start()
    infos = [client.publish(f"{prefix}/dev{i % 50}/temp", json.dumps({"seq": i}), qos=1) for i in range(count)]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


async def count_of(session, base: str, query: str) -> int:  # type: ignore[no-untyped-def]
    async with session.get(f"{base}/activations?count=true{query}") as r:
        return int((await r.json())["activations"])


async def run(args: argparse.Namespace) -> None:
    host, port = args.broker.split(":")
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    async with hub(args.runtime, prewarm=0) as (session, base):
        await put_action(session, base, "noop")
        await invoke_ms(session, base, "noop")
        async with session.put(f"{base}/triggers/readings", json={"annotations": [
                {"key": "feed", "value": "/whisk.system/mqtt/subscribe"}]}) as r:
            assert r.status == 200
        feed = {"lifecycleEvent": "CREATE", "triggerName": "/_/readings", "authKey": "", "qos": 1,
                "url": f"mqtt://{host}:{port}", "topics": [f"{prefix}/+/temp"]}
        async with session.post(f"{base.replace('/_', '/whisk.system')}/actions/mqtt/subscribe?blocking=true",
                                json=feed) as r:
            assert r.status == 200, await r.text()
        async with session.put(f"{base}/rules/readings-noop", json={"trigger": "readings", "action": "noop"}) as r:
            assert r.status == 200
        start = time.perf_counter()
        await asyncio.to_thread(publish_all, host, int(port), prefix, args.count)
        events_s = actions_s = None
        while actions_s is None:
            triggers = await count_of(session, base, "&name=readings")
            actions = await count_of(session, base, "&name=noop") - 1
            now = time.perf_counter() - start
            if events_s is None and triggers >= args.count:
                events_s = now
            if actions >= args.count:
                actions_s = now
            await asyncio.sleep(0.05)
        print(f"runtime={args.runtime} mqtt {args.count} QoS 1 messages: publish -> stored trigger event "
              f"{args.count / events_s:.0f} msg/s; publish -> stored action record {args.count / actions_s:.0f} msg/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--broker", default="127.0.0.1:18830")
    parser.add_argument("--runtime", default="process", choices=["process", "docker"])
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
