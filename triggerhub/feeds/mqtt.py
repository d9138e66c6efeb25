"""MQTT feed (paho-mqtt 2.x): every message on the subscribed filters becomes one trigger event.

A QoS 1/2 message is acknowledged (PUBACK / PUBCOMP, paho's manual_ack mode) only after `emit`
returned, i.e. after it is durable. Sessions are persistent (stable client id, clean start off),
so messages published while the hub is down arrive after restart. Paho's network thread hands
messages to the asyncio side through a bounded queue; a full queue holds the network thread,
which is the back-pressure towards the broker.

Event ids: `mqtt:<client id>:<generation>:<packet id>:<hash>`. Packet ids are reused (1..65535),
so the feed counts wrap-arounds ("generation") in a cursor stored with each event; a redelivery
after a crash gets the same id and is deduplicated. A v5 user property `id` (the CloudEvents MQTT
binding) is used instead when present. QoS 0 messages have no redelivery and get random ids.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from triggerhub.clock import SYSTEM_CLOCK, Clock
from triggerhub.errors import ApiError, BadRequest, FeedError
from triggerhub.feeds.cursor import CursorEmit, CursorLoader
from triggerhub.feeds.kind import BuiltinFeed, FeedContext, FeedKind, ParseContext
from triggerhub.feeds.lifecycle import FeedTask, hand_over, ignore_failure
from triggerhub.model import JSON, TriggerEvent, loads_json

log = logging.getLogger(__name__)

EVENT_TYPE = "triggerhub.feed.mqtt.message"
CURSOR_KEY = "packets"
CONNECT_TIMEOUT_S = 10.0
QUEUE_SIZE = 1_000
EMIT_WINDOW = 64  # messages being stored at once; acknowledgements stay in order
_MID_SPACE = 65_536


@dataclass(frozen=True, slots=True)
class MqttConfig:
    url: str
    topics: tuple[str, ...]
    qos: int = 1
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    share_group: str | None = None
    retained: str = "current-state"  # ignore | current-state
    payload_encoding: str = "json"  # json | text | base64
    protocol: str = "v5"  # v5 | v311
    session_expiry_s: int = 7 * 86_400
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or (8883 if self.tls else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme in ("mqtts", "ssl")

    def filters(self) -> list[str]:
        return [f"$share/{self.share_group}/{t}" if self.share_group else t for t in self.topics]

    def to_json(self, *, redact: bool) -> dict[str, JSON]:
        return {"url": self.url, "topics": list(self.topics), "qos": self.qos, "username": self.username,
                "password": "********" if redact and self.password else self.password, "clientId": self.client_id,
                "shareGroup": self.share_group, "retained": self.retained, "payloadEncoding": self.payload_encoding,
                "protocol": self.protocol, "sessionExpiryS": self.session_expiry_s, "caFile": self.ca_file,
                "certFile": self.cert_file, "keyFile": self.key_file, "insecure": self.insecure}


def parse_mqtt_config(params: Mapping[str, JSON]) -> MqttConfig:
    url = params.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not urlsplit(url).hostname:
        raise BadRequest(f"url parameter '{url}' must be a broker URL like mqtt://host:1883 or mqtts://host:8883")
    raw_topics = params.get("topics", params.get("topic"))
    topics = tuple(t.strip() for t in raw_topics.split(",")) if isinstance(raw_topics, str) else tuple(raw_topics or ())
    if not topics or not all(isinstance(t, str) and t and _valid_filter(t) for t in topics):
        raise BadRequest(f"topics parameter '{raw_topics}' must list MQTT topic filters; '+' and '#' may only "
                         "fill a whole level and '#' must be last, e.g. sensors/+/temperature")
    qos = params.get("qos", 1)
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        raise BadRequest(f"qos parameter '{qos}' must be 0, 1 or 2")
    choices = {"retained": ("ignore", "current-state"), "payloadEncoding": ("json", "text", "base64"),
               "protocol": ("v5", "v311")}
    chosen = {}
    for key, allowed in choices.items():
        value = params.get(key, allowed[1] if key == "retained" else allowed[0])
        if value not in allowed:
            raise BadRequest(f"{key} parameter '{value}' must be one of {', '.join(allowed)}")
        chosen[key] = value
    share_group = params.get("shareGroup")
    if share_group is not None and (chosen["protocol"] != "v5" or not _valid_level(str(share_group))):
        raise BadRequest(f"shareGroup parameter '{share_group}' needs protocol v5 and a name without / + #")
    return MqttConfig(
        url=url, topics=topics, qos=int(qos), username=_opt(params, "username"), password=_opt(params, "password"),
        client_id=_opt(params, "clientId"), share_group=share_group, retained=chosen["retained"],
        payload_encoding=chosen["payloadEncoding"], protocol=chosen["protocol"],
        session_expiry_s=int(params.get("sessionExpiryS", 7 * 86_400)), ca_file=_opt(params, "caFile"),
        cert_file=_opt(params, "certFile"), key_file=_opt(params, "keyFile"), insecure=bool(params.get("insecure")),
    )


def _opt(params: Mapping[str, JSON], key: str) -> str | None:
    value = params.get(key)
    return None if value in (None, "") else str(value)


def _valid_level(level: str) -> bool:
    return bool(level) and not any(c in level for c in "/+#")


def _valid_filter(topic: str) -> bool:
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and (level != "#" or i != len(levels) - 1)):
            return False
    return True


# --------------------------------------------------------------------------- messages


def decode_payload(payload: bytes | bytearray, encoding: str) -> JSON:
    if encoding == "base64":
        return base64.b64encode(payload).decode()
    text = payload.decode("utf-8", "replace")
    if encoding == "text":
        return text
    try:
        return loads_json(text)
    except ValueError:
        return text  # not JSON after all (or nested too deep to keep): the action still gets the text


def message_properties(msg: paho.MQTTMessage) -> dict[str, JSON]:
    props = getattr(msg, "properties", None)
    if props is None:
        return {}
    out: dict[str, JSON] = {}
    for attr, key in (("ContentType", "contentType"), ("ResponseTopic", "responseTopic"),
                      ("MessageExpiryInterval", "messageExpiryInterval"),
                      ("PayloadFormatIndicator", "payloadFormatIndicator")):
        if hasattr(props, attr):
            out[key] = getattr(props, attr)
    if hasattr(props, "CorrelationData"):
        out["correlationData"] = base64.b64encode(props.CorrelationData).decode()
    if hasattr(props, "UserProperty"):
        out["userProperties"] = {k: v for k, v in props.UserProperty}
    return out


class PacketIds:
    """Turns reused packet ids into stable positions: (generation, packet id)."""

    def __init__(self, stored: str | None) -> None:
        state = json.loads(stored) if stored else {}
        self.generation: int = state.get("g", 0)
        self.last_mid: int | None = state.get("mid")

    def new_session(self) -> None:
        """The broker forgot our session: packet ids start over, so must our positions."""
        self.generation += 1
        self.last_mid = None

    def position(self, mid: int) -> int:
        """The generation of `mid`; advances on a wrap, stays for redeliveries of older ids."""
        if self.last_mid is None:
            self.last_mid = mid
            return self.generation
        ahead = (mid - self.last_mid) % _MID_SPACE
        if 0 < ahead < _MID_SPACE // 2:  # a newer packet
            if mid < self.last_mid:
                self.generation += 1
            self.last_mid = mid
            return self.generation
        return self.generation - 1 if mid > self.last_mid else self.generation  # an older one, redelivered

    def cursor(self) -> str:
        return json.dumps({"g": self.generation, "mid": self.last_mid})


# --------------------------------------------------------------------------- the feed


class MqttFeed:
    def __init__(self, config: MqttConfig, *, trigger: str, tasks: asyncio.TaskGroup, load_cursor: CursorLoader,
                 default_client_id: str, clock: Clock = SYSTEM_CLOCK,
                 on_failed: Callable[[str], None] = ignore_failure) -> None:
        self._config = config
        self._run = FeedTask("mqtt", trigger=trigger, tasks=tasks, clock=clock, on_failed=on_failed, logger=log)
        self._load_cursor = load_cursor
        self.client_id = config.client_id or default_client_id
        self._client: paho.Client | None = None
        self._stopping = threading.Event()
        self._packets = PacketIds(None)

    async def start(self, emit: CursorEmit) -> None:
        if self._client is not None:
            return
        self._stopping.clear()
        self._packets = PacketIds(await self._load_cursor(CURSOR_KEY))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[paho.MQTTMessage] = asyncio.Queue(maxsize=QUEUE_SIZE)
        connected: asyncio.Future[None] = loop.create_future()  # set at the first SUBACK
        client = self._make_client(loop, queue, connected)
        host, port = self._config.host_port
        try:
            client.connect_async(host, port, keepalive=30, **self._connect_kwargs())
        except (OSError, ValueError) as exc:
            raise FeedError(f"MQTT broker {self._config.url}: {exc}; check the url parameter") from exc
        client.loop_start()
        self._client = client
        # Consume from the start: a persistent session's backlog may arrive before the SUBACK, and
        # a network thread blocked on a full queue would never read that SUBACK.
        await self._run.start(self._consume(queue, emit))
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await connected
        except (TimeoutError, FeedError) as exc:
            await self.stop()
            if isinstance(exc, FeedError):
                raise
            raise FeedError(f"MQTT broker {self._config.url} did not accept a connection within "
                            f"{CONNECT_TIMEOUT_S:.0f} s; check that it runs and the url") from exc

    async def stop(self) -> None:
        self._stopping.set()  # releases the network thread if it waits on a full queue
        client, self._client = self._client, None
        await self._run.stop()
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            log.info("%s disconnected", self._run.label)

    def _connect_kwargs(self) -> dict[str, Any]:
        if self._config.protocol != "v5":
            return {}
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
        props.SessionExpiryInterval = self._config.session_expiry_s
        return {"clean_start": False, "properties": props}

    def _make_client(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[paho.MQTTMessage],
                     connected: asyncio.Future[None]) -> paho.Client:
        v5 = self._config.protocol == "v5"
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
                             clean_session=None if v5 else False, manual_ack=True)
        client.reconnect_delay_set(1, 30)
        if self._config.username is not None:
            client.username_pw_set(self._config.username, self._config.password)
        if self._config.tls:
            client.tls_set(ca_certs=self._config.ca_file, certfile=self._config.cert_file,
                           keyfile=self._config.key_file, cert_reqs=ssl.CERT_NONE if self._config.insecure else ssl.CERT_REQUIRED)
            client.tls_insecure_set(self._config.insecure)

        def settle(error: FeedError | None) -> None:
            if connected.done():
                return
            if error is None:
                connected.set_result(None)
            else:
                connected.set_exception(error)

        def on_connect(c: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                error = FeedError(f"MQTT broker {self._config.url} refused the connection: {reason}; check "
                                  "username, password and clientId")
                loop.call_soon_threadsafe(settle, error)
                return
            if not flags.session_present:
                self._packets.new_session()
            options = SubscribeOptions(qos=self._config.qos, retainHandling=2 if self._config.retained == "ignore" else 0)
            if v5:
                c.subscribe([(f, options) for f in self._config.filters()])
            else:
                c.subscribe([(f, self._config.qos) for f in self._config.filters()])
            log.info("%s connected as %s (session present: %s)", self._run.label, self.client_id,
                     flags.session_present)

        def on_subscribe(_c: paho.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
            failed = [str(r) for r in reasons if r.is_failure]
            error = FeedError(f"MQTT broker {self._config.url} refused the subscription to "
                              f"{', '.join(self._config.filters())}: {', '.join(failed)}") if failed else None
            loop.call_soon_threadsafe(settle, error)

        def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
            hand_over(msg, queue, loop, self._stopping)  # stopping: left unacknowledged, redelivered next session

        client.on_connect = on_connect
        client.on_message = on_message
        def on_connect_fail(_client: paho.Client, _userdata: Any) -> None:
            loop.call_soon_threadsafe(settle, FeedError(
                f"MQTT broker {self._config.url} did not accept a connection; check that it runs and the url"))

        client.on_connect_fail = on_connect_fail
        client.on_subscribe = on_subscribe
        return client

    async def _consume(self, queue: asyncio.Queue[paho.MQTTMessage], emit: CursorEmit) -> None:
        """Store up to EMIT_WINDOW messages at once (the store group-commits them) and
        acknowledge strictly in arrival order, as MQTT requires, each only once it is stored."""
        in_order: asyncio.Queue[tuple[paho.MQTTMessage, asyncio.Task[None]]] = asyncio.Queue(maxsize=EMIT_WINDOW)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._acknowledge(in_order))
            while True:
                msg = await queue.get()
                event = self._event(msg)  # ids are assigned in arrival order
                await in_order.put((msg, tg.create_task(self._store(msg, event, emit))))

    async def _acknowledge(self, in_order: asyncio.Queue[tuple[paho.MQTTMessage, asyncio.Task[None]]]) -> None:
        while True:
            msg, stored = await in_order.get()
            await stored
            self._ack(msg)

    async def _store(self, msg: paho.MQTTMessage, event: tuple[TriggerEvent, tuple[str, str] | None] | None,
                     emit: CursorEmit) -> None:
        if event is None:
            return
        try:  # not acknowledged until stored: a store or bus outage is retried, never dropped
            await self._run.store(f"storing a message on {msg.topic}", lambda: emit(event[0], cursor=event[1]))
        except ApiError as exc:  # refused for good: left unacknowledged, the feed is paused
            self._run.refused(exc, f"a message on {msg.topic}")
            await asyncio.Event().wait()  # until stop() cancels us: nothing after it is acknowledged

    def _event(self, msg: paho.MQTTMessage) -> tuple[TriggerEvent, tuple[str, str] | None] | None:
        """The trigger event for `msg` and the cursor stored with it; None when policy drops it."""
        if msg.retain and self._config.retained == "ignore":
            return None
        event_id, cursor = self._identify(msg)
        received_ms = self._run.clock.now_ms()
        return TriggerEvent(
            id=event_id, source=self._config.url, type=EVENT_TYPE, trigger=self._run.fqn, subject=msg.topic,
            time_ms=received_ms, data={
                "topic": msg.topic, "qos": msg.qos, "retain": bool(msg.retain), "timestamp": received_ms,
                "payload": decode_payload(msg.payload, self._config.payload_encoding),
                "properties": message_properties(msg),
            }), cursor

    def _identify(self, msg: paho.MQTTMessage) -> tuple[str, tuple[str, str] | None]:
        digest = hashlib.sha256(msg.topic.encode() + b"\0" + msg.payload).hexdigest()[:16]
        user_id = message_properties(msg).get("userProperties", {}).get("id")
        if user_id:
            return f"mqtt:ce:{user_id}", None
        if msg.retain:  # the broker's current state, re-sent on every subscribe: fire each state once
            return f"mqtt:retained:{self._run.trigger}:{msg.topic}:{digest}", None
        if msg.qos == 0:
            return f"mqtt:{self.client_id}:q0:{uuid.uuid4().hex}", None
        generation = self._packets.position(msg.mid)
        return f"mqtt:{self.client_id}:{generation}:{msg.mid}:{digest}", (CURSOR_KEY, self._packets.cursor())

    def _ack(self, msg: paho.MQTTMessage) -> None:
        client = self._client
        if client is not None and msg.qos > 0:
            client.ack(msg.mid, msg.qos)


# --------------------------------------------------------------------------- the feed kind


def _parse(params: Mapping[str, JSON], _ctx: ParseContext) -> dict[str, JSON]:
    return parse_mqtt_config(params).to_json(redact=False)


def _build(config: Mapping[str, JSON], ctx: FeedContext) -> MqttFeed:
    digest = hashlib.sha256(ctx.trigger.encode()).hexdigest()[:12]
    return MqttFeed(parse_mqtt_config(config), trigger=ctx.trigger, tasks=ctx.tasks, load_cursor=ctx.load_cursor,
                    default_client_id=f"triggerhub-{digest}-{ctx.instance_id}", clock=ctx.clock,
                    on_failed=ctx.on_failed)


FEED_KIND = FeedKind(
    catalogue=BuiltinFeed("mqtt", "subscribe", "Fire a trigger for every MQTT message on the given topic filters",
                          ("url", "topics", "qos", "username", "password", "clientId", "shareGroup", "retained",
                           "payloadEncoding", "protocol", "caFile", "certFile", "keyFile", "insecure")),
    parse=_parse, build=_build, secret_keys=("password",),
)
