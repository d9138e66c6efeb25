"""The embedded MQTT broker behind `triggerhub up --mqtt-embedded` (amqtt, MQTT 3.1.1 only).

It serves on a loopback address while its context is open, so sensors on this machine can
publish without installing Mosquitto. Feeds that use it must say `protocol: v311` (amqtt has
no MQTT 5). Clients need no credentials, yet their sessions are kept like named ones: a feed
with clean session off gets the QoS 1/2 messages published while it was disconnected.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from amqtt.broker import Broker
from amqtt.errors import BrokerError, PluginError
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from triggerhub.errors import FeedError

log = logging.getLogger(__name__)


class OpenAccess(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Admits every client. amqtt's own anonymous plugin marks sessions anonymous, and the
    broker then drops their subscriptions and queued messages on disconnect; this one does not."""

    async def authenticate(self, *, session: Session) -> bool:
        return True


def broker_config(host: str, port: int, persistence_path: Path | None = None) -> dict[str, Any]:
    """amqtt's configuration: one TCP listener on `host:port`, open access, no $SYS topics."""
    plugins: dict[str, Any] = {f"{__name__}.{OpenAccess.__name__}": {}}
    if persistence_path is not None:  # sessions, subscriptions and retained messages survive a restart
        plugins["amqtt.contrib.persistence.SessionDBPlugin"] = {
            "connection": f"sqlite+aiosqlite:///{persistence_path}", "clear_on_shutdown": False}
    return {"listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}}, "plugins": plugins}


@asynccontextmanager
async def embedded_broker(host: str = "127.0.0.1", port: int = 1883, *,
                          persistence_path: Path | None = None) -> AsyncIterator[None]:
    """Serve MQTT 3.1.1 on `host:port` (a loopback address) until the context exits.

    Raises FeedError when the address is not loopback or the port cannot be bound."""
    if not _loopback(host):
        raise FeedError(f"embedded MQTT broker host '{host}' is not a loopback address; use 127.0.0.1")
    broker = Broker(broker_config(host, port, persistence_path))
    try:
        await broker.start()
    except (BrokerError, PluginError, OSError) as exc:
        raise FeedError(f"embedded MQTT broker could not listen on {host}:{port}: {exc.__cause__ or exc}; "
                        "stop whatever uses the port or run without --mqtt-embedded") from exc
    log.info("embedded MQTT broker listening on %s:%d", host, port)
    try:
        yield
    finally:
        await broker.shutdown()
        log.info("embedded MQTT broker on %s:%d stopped", host, port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
