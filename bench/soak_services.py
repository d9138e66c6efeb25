"""The soak run's private Kafka, Mosquitto and PostgreSQL, and its MQTT publisher (bench/soak.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.plugins.services import PROJECT_ROOT, read_services_env

PUBLISH_TIMEOUT_S = 5.0
SERVICES = ("postgres", "mosquitto", "kafka")


# ---------------------------------------------------------------- private services


@dataclass(frozen=True, slots=True)
class PrivateServices:
    """Kafka, Mosquitto and PostgreSQL of this run alone, through the project's service scripts."""

    cache: Path
    ports: dict[str, str]

    def env(self) -> dict[str, str]:
        return {**os.environ, "TH_SVC_CACHE": str(self.cache), **self.ports}

    def run(self, service: str, action: str) -> None:
        result = subprocess.run(["nice", str(PROJECT_ROOT / "scripts" / "services" / f"{service}.sh"), action],
                                env=self.env(), capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise SystemExit(f"scripts/services/{service}.sh {action} failed ({result.returncode}):\n{result.stderr}")

    def start_all(self) -> dict[str, str]:
        self.cache.mkdir(parents=True, exist_ok=True)
        libs = self.cache / "kafka" / "libs"
        shared_libs = PROJECT_ROOT / ".cache" / "kafka" / "libs"
        if not libs.exists() and shared_libs.is_dir():  # the jars are read-only input: share, never re-fetch
            libs.parent.mkdir(parents=True, exist_ok=True)
            libs.symlink_to(shared_libs.resolve())
        for service in SERVICES:
            self.run(service, "start")
        return read_services_env(self.cache / "services.env")

    def stop_all(self) -> None:
        for service in reversed(SERVICES):
            self.run(service, "stop")


# ---------------------------------------------------------------- MQTT publishing


class MqttPublisher:
    """QoS 1 publishes, each acknowledged (PUBACK) or not. A connection that drops is abandoned,
    never resumed: a resumed client would resend unacknowledged messages as new ones, which the
    hub would rightly see as new events (doubles made by this script, not by the hub)."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._client: paho.Client | None = None
        self._generation = 0

    def _connected(self) -> paho.Client | None:
        with self._lock:
            if self._client is not None and self._client.is_connected():
                return self._client
            self._drop()
            self._generation += 1
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-pub-{os.getpid()}-{self._generation}",
                                 protocol=paho.MQTTv5, reconnect_on_failure=False)
            client.max_inflight_messages_set(200)
            try:
                client.connect(self._host, self._port, keepalive=30)
            except OSError:
                return None
            client.loop_start()
            deadline = time.monotonic() + 2
            while not client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not client.is_connected():
                client.loop_stop()
                return None
            self._client = client
            return client

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # whatever state the dead connection is in
                self._client.disconnect()
                self._client.loop_stop()
            self._client = None

    def publish(self, topic: str, payload: bytes, message_id: str | None) -> bool:
        client = self._connected()
        if client is None:
            return False
        properties = Properties(PacketTypes.PUBLISH)
        if message_id:
            properties.UserProperty = ("id", message_id)
        info = client.publish(topic, payload, qos=1, properties=properties)
        try:
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def close(self) -> None:
        with self._lock:
            self._drop()
