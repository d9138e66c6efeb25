"""The document patterns and transforms see for one trigger event: its CloudEvents attributes,
its `data`, and the trigger it was fired on."""

from __future__ import annotations

from typing import Any

from triggerhub.model import TriggerEvent


def event_document(event: TriggerEvent) -> dict[str, Any]:
    """{"specversion": "1.0", "id", "source", "type", "subject", "time" (RFC 3339), "datacontenttype",
    "data", "trigger": "/ns/name"}. `subject` defaults to the trigger's name, as in the event log."""
    document: dict[str, Any] = event.to_cloudevent()
    document["trigger"] = str(event.trigger)
    return document
