"""MQTT paths: QoS 1 publish -> activation stored, and -> the action's reply published back.

Bursts are published by `mosquitto_pub -l` and counted by `mosquitto_sub -C` (compiled clients);
latency is taken at 100 msg/s with paho, each payload carrying its publish time. Node-RED runs the
same QoS 1 in -> function -> out flow on the same private broker.
"""

from __future__ import annotations

import time
import uuid

from bench import systems
from bench.context import Context, drained, latency_stats
from bench.measure import Row, mqtt_listener, percentile, publish_burst, publish_paced, receive_burst

MQTT_ECHO = ("def main(args):\n    payload = args.get('payload') or {}\n"
             "    return {'seq': payload.get('seq'), 'sent_ms': payload.get('sent_ms')}\n")
# A warm runtime keeps module state: the client connects once and publishes each reply (QoS 1).
# The action publishes its reply itself. The process runtime's sandbox shows an action /usr only (no
# paho), so it speaks MQTT 3.1.1 over a socket it keeps open while warm: CONNECT once, then one QoS 1
# PUBLISH per event; PUBACKs are drained without waiting, as Node-RED's mqtt out does not wait either.
# It needs the `sandbox-network: true` annotation to reach the broker.
MQTT_REPLY = """import json
import socket

sock = None
packet_id = 0


def remaining_length(n):
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def string(text):
    data = text.encode()
    return len(data).to_bytes(2, 'big') + data


def connect(host, port):
    conn = socket.create_connection((host, port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = string('MQTT') + bytes([4, 2]) + (60).to_bytes(2, 'big') + string('')  # v3.1.1, clean session
    conn.sendall(b'\\x10' + remaining_length(len(body)) + body)
    connack = conn.recv(4)
    if len(connack) != 4 or connack[3] != 0:
        raise ConnectionError(f'CONNACK {connack!r}')
    return conn


def main(args):
    global sock, packet_id
    payload = args.get('payload') or {}
    reply = {'seq': payload.get('seq'), 'sent_ms': payload.get('sent_ms')}
    packet_id = packet_id % 65535 + 1
    body = string(args['reply_topic']) + packet_id.to_bytes(2, 'big') + json.dumps(reply).encode()
    packet = b'\\x32' + remaining_length(len(body)) + body  # PUBLISH, QoS 1
    for attempt in (1, 2):
        try:
            if sock is None:
                sock = connect(args['broker_host'], int(args['broker_port']))
            sock.sendall(packet)
            break
        except OSError:
            sock = None
            if attempt == 2:
                raise
    try:
        while sock.recv(65536, socket.MSG_DONTWAIT):
            pass
    except BlockingIOError:
        pass
    return reply
"""


def measure_floor_mqtt(ctx: Context) -> Row:
    host, port = ctx.broker()
    topic = f"floor{uuid.uuid4().hex[:6]}/direct"
    burst_s = mqtt_burst_through(host, port, topic, topic, ctx.sizes.mqtt_burst)
    latencies = mqtt_paced_through(host, port, topic, topic, ctx.sizes.mqtt_paced)
    return Row("floor.mqtt", "floor", "QoS 1 publish -> Mosquitto -> subscriber receives (burst: mosquitto_pub -l "
               "-> mosquitto_sub -C; p50/p99: paho at 100 msg/s)", *latency_stats(latencies),
               rate_per_s=round(ctx.sizes.mqtt_burst / burst_s, 1), rate_samples=ctx.sizes.mqtt_burst)


def mqtt_burst_through(host: str, port: int, publish_topic: str, receive_topic: str, count: int) -> float:
    """Seconds from the first publish of a mosquitto_pub burst until mosquitto_sub received `count` on `receive_topic`."""
    receiver = receive_burst(host, port, receive_topic, count)
    time.sleep(0.5)  # mosquitto_sub has subscribed
    start = time.perf_counter()
    publisher = publish_burst(host, port, publish_topic, count)
    publisher.wait(timeout=300)
    if receiver.wait(timeout=300) != 0:
        raise SystemExit(f"mosquitto_sub on {receive_topic} did not receive {count} messages (exit {receiver.returncode})")
    return time.perf_counter() - start


def mqtt_paced_through(host: str, port: int, publish_topic: str, receive_topic: str, count: int) -> list[float]:
    """Publish `count` at 100 msg/s; ms from each publish to its receipt on `receive_topic`."""
    with mqtt_listener(host, port, receive_topic) as received:
        publish_paced(host, port, publish_topic, count, 100)
        deadline = time.monotonic() + 60
        while len(received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
    latencies = [at - float(payload["sent_ms"]) for at, payload in received]  # type: ignore[arg-type]
    if len(latencies) < count:
        raise SystemExit(f"{receive_topic}: {len(latencies)} of {count} paced messages arrived")
    return latencies


def mqtt_hub_trigger(ctx: Context, hub: systems.Hub, name: str, action: str, code: str,
                     params: dict[str, object], *, network: bool = False) -> str:
    host, port = ctx.broker()
    prefix = f"{name}{uuid.uuid4().hex[:6]}"
    hub.must("PUT", f"actions/{action}", {"exec": {"kind": "python:default", "code": code},
                                          "parameters": [{"key": k, "value": v} for k, v in params.items()],
                                          "annotations": [{"key": "sandbox-network", "value": network}]})
    hub.must("POST", f"actions/{action}?blocking=true", {})  # a warm runtime
    hub.must("PUT", f"triggers/{name}", {"annotations": [{"key": "feed", "value": "/whisk.system/mqtt/subscribe"}]})
    hub.must("POST", "/api/v1/namespaces/whisk.system/actions/mqtt/subscribe?blocking=true",
             {"lifecycleEvent": "CREATE", "triggerName": f"/_/{name}", "authKey": "", "qos": 1,
              "url": f"mqtt://{host}:{port}", "topics": [f"{prefix}/+/temp"]})
    hub.must("PUT", f"rules/on-{name}", {"trigger": name, "action": action})
    return prefix


def records(hub: systems.Hub, action: str, count: int) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    while len(found) < count:
        page = hub.must("GET", f"activations?name={action}&docs=true&limit=200&skip={len(found)}")
        assert isinstance(page, list)
        if not page:
            break
        found.extend(page)
    return found


def mqtt_stored(ctx: Context) -> None:
    hub = ctx.hub()
    host, port = ctx.broker()
    prefix = mqtt_hub_trigger(ctx, hub, "readings", "mqttecho", MQTT_ECHO, {})
    before = hub.count("mqttecho")
    start = time.perf_counter()
    publish_burst(host, port, f"{prefix}/dev0/temp", ctx.sizes.mqtt_burst).wait(timeout=300)
    count, elapsed_s = drained(hub, "mqttecho", before + ctx.sizes.mqtt_burst, start)
    burst_rate = (count - before) / elapsed_s
    before = count
    publish_paced(host, port, f"{prefix}/dev1/temp", ctx.sizes.mqtt_paced, 100)
    drained(hub, "mqttecho", before + ctx.sizes.mqtt_paced, time.perf_counter())
    latencies, to_start, cold = [], [], 0
    for record in records(hub, "mqttecho", ctx.sizes.mqtt_paced):
        result = record["response"]["result"]  # type: ignore[index]
        if result.get("sent_ms"):  # type: ignore[union-attr]
            latencies.append(float(record["end"]) - float(result["sent_ms"]))  # type: ignore[arg-type,index]
            to_start.append(float(record["start"]) - float(result["sent_ms"]))  # type: ignore[arg-type,index]
            cold += any(note.get("key") == "initTime" for note in record.get("annotations", []))  # type: ignore[attr-defined,union-attr]
    ctx.add(Row("mqtt.stored", "triggerhub", "QoS 1 publish -> Mosquitto -> MQTT feed (event stored, PUBACK) -> rule "
                "-> python action -> action record (p50/p99: record's end time - publish time at 100 msg/s; rate: "
                "burst, first publish -> last record counted)", *latency_stats(latencies),
                rate_per_s=round(burst_rate, 1), rate_samples=ctx.sizes.mqtt_burst, floor="floor.mqtt",
                values={"to_action_start_p50_ms": round(percentile(to_start, 0.5), 3), "cold_starts": cold}))


def mqtt_reply(ctx: Context) -> None:
    hub = ctx.hub()
    host, port = ctx.broker()
    reply_topic = f"threply{uuid.uuid4().hex[:6]}"
    prefix = mqtt_hub_trigger(ctx, hub, "replies", "mqttreply", MQTT_REPLY,
                              {"broker_host": host, "broker_port": port, "reply_topic": reply_topic}, network=True)
    burst_s = mqtt_burst_through(host, port, f"{prefix}/dev0/temp", reply_topic, ctx.sizes.mqtt_burst)
    latencies = mqtt_paced_through(host, port, f"{prefix}/dev1/temp", reply_topic, ctx.sizes.mqtt_paced)
    timed = ("QoS 1 publish -> Mosquitto -> {} -> reply published (QoS 1) -> subscriber receives (burst: "
             "mosquitto_pub -l -> mosquitto_sub -C; p50/p99: paho at 100 msg/s)")
    ctx.add(Row("mqtt.reply", "triggerhub", timed.format("MQTT feed (event stored) -> rule -> python action"),
                *latency_stats(latencies), rate_per_s=round(ctx.sizes.mqtt_burst / burst_s, 1),
                rate_samples=ctx.sizes.mqtt_burst, floor="floor.mqtt"))
    _, _, red_prefix = ctx.node_red()
    burst_s = mqtt_burst_through(host, port, f"{red_prefix}/dev0/temp", f"{red_prefix}/reply", ctx.sizes.mqtt_burst)
    latencies = mqtt_paced_through(host, port, f"{red_prefix}/dev1/temp", f"{red_prefix}/reply",
                                   ctx.sizes.mqtt_paced)
    ctx.add(Row("mqtt.reply", "node-red", timed.format("Node-RED mqtt in (QoS 1) -> function -> mqtt out"),
                *latency_stats(latencies), rate_per_s=round(ctx.sizes.mqtt_burst / burst_s, 1),
                rate_samples=ctx.sizes.mqtt_burst, floor="floor.mqtt"))
