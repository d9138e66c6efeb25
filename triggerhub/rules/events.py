"""The document patterns and transforms see for one trigger event: its CloudEvents attributes,
its `data`, and the trigger it was fired on."""

from __future__ import annotations

from typing import Any

from triggerhub.model import TriggerEvent


MQTT_MESSAGE_TYPE = "triggerhub.feed.mqtt.message"  # feeds/mqtt.py EVENT_TYPE (siblings never import each other)


def event_document(event: TriggerEvent) -> dict[str, Any]:
    """{"specversion": "1.0", "id", "source", "type", "subject", "time" (RFC 3339), "datacontenttype",
    "data", "trigger": "/ns/name"}. `subject` defaults to the trigger's name, as in the event log.

    An MQTT message is seen as the CloudEvents MQTT binding maps it: `data` is the message payload
    (`$.data.temp`), `subject` its topic, and the feed's envelope (topic, qos, retain, timestamp,
    properties) the extension attribute `mqtt`. Actions still receive the envelope, as before."""
    document: dict[str, Any] = event.to_cloudevent()
    document["trigger"] = str(event.trigger)
    if event.type == MQTT_MESSAGE_TYPE and isinstance(event.data, dict) and "payload" in event.data:
        envelope = dict(event.data)
        document["data"] = envelope.pop("payload")
        document["mqtt"] = envelope
    return document
